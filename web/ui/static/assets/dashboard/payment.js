// One payment: its details, its refunds, and a form to refund all or part
// of what is left. The API decides; its refusal is shown as it says it.
import { api, query, newKey } from './api.js';
import { h, badge, when, loading, failure, notice, icon, thead, emptyRow } from './dom.js';
import { formatAmount, minorDigits, parseAmount } from '../money.js';
import { methodDetail } from './transactions.js';

export async function render(main, me, id) {
  main.replaceChildren(loading('Loading payment…'));
  const load = () => Promise.all([
    api(`/payments/${encodeURIComponent(id)}`),
    api(`/payments/${encodeURIComponent(id)}/refunds${query({ limit: 100 })}`),
  ]);
  let p;
  let refunds;
  try {
    [p, refunds] = await load();
  } catch (err) {
    main.replaceChildren(back(), err.status === 404
      ? failure(new Error('There is no payment with this id on your account.'))
      : failure(err, () => render(main, me, id)));
    return;
  }
  document.title = `${p.id} · paygate`;
  const detailsBox = h('div', {});
  const refundsBox = h('div', {});
  const formBox = h('div', {});
  main.replaceChildren(h('div', { class: 'page', test: 'payment-detail', 'data-payment-id': p.id },
    back(),
    h('div', { class: 'page-head' },
      h('div', {},
        h('h1', { class: 'amount-title' }, formatAmount(p.amount, p.currency), ' ', badge(p.status, 'payment-status')),
        h('p', { class: 'muted mono' }, p.id))),
    h('div', { class: 'grid-main' },
      h('section', { class: 'card', 'aria-labelledby': 'details-title' },
        h('div', { class: 'card-head' }, h('h2', { id: 'details-title' }, 'Details')),
        detailsBox),
      h('section', { class: 'card', test: 'refund-section', 'aria-labelledby': 'refund-title' },
        h('div', { class: 'card-head' }, h('h2', { id: 'refund-title' }, 'Refund')),
        formBox)),
    h('section', { class: 'card card-flush', 'aria-labelledby': 'refunds-title' },
      h('div', { class: 'card-head card-head-pad' }, h('h2', { id: 'refunds-title' }, 'Refunds')),
      refundsBox)));

  let timer = 0;
  addEventListener('pagehide', () => clearTimeout(timer));

  // Refunds are processed in the background: the table is reloaded until
  // none is pending. The form is left alone, so typing is not lost.
  const watch = () => {
    clearTimeout(timer);
    if (!refunds.data.some((r) => r.status === 'pending')) return;
    timer = setTimeout(async () => {
      try {
        [p, refunds] = await load();
      } catch {
        return; // shown on the next action; the table stays as it was
      }
      detailsBox.replaceChildren(details(p));
      refundsBox.replaceChildren(refundsTable(refunds.data, p.currency));
      watch();
    }, 1500);
  };
  // redraw shows everything again after a refund; said is the message to
  // show under the new form.
  const redraw = async (said) => {
    try {
      [p, refunds] = await load();
    } catch (err) {
      refundsBox.replaceChildren(failure(err, () => redraw('')));
      return;
    }
    draw(said);
  };
  const draw = (said) => {
    detailsBox.replaceChildren(details(p));
    refundsBox.replaceChildren(refundsTable(refunds.data, p.currency));
    const refunded = refunds.data.reduce((n, r) => n + r.amount, 0);
    formBox.replaceChildren(refundForm(p, p.amount - refunded, redraw, said));
    watch();
  };
  draw('');
}

function back() {
  return h('a', { class: 'back-link', href: '/dashboard/transactions' }, icon('back'), 'Transactions');
}

function details(p) {
  const rows = [
    ['Payment ID', h('span', { class: 'mono' }, p.id)],
    ['Order ID', h('span', { class: 'mono', test: 'payment-order-id' }, p.order_id)],
    ['Amount', formatAmount(p.amount, p.currency)],
    ['Method', `${p.method === 'upi' ? 'UPI' : 'Card'} · ${methodDetail(p)}`],
    ['Status', badge(p.status)],
    ['Captured', p.captured ? 'Yes' : 'No'],
    ['Refunded', h('span', { test: 'amount-refunded' }, formatAmount(p.amount_refunded, p.currency))],
    ['Created', when(p.created_at)],
    ['Updated', when(p.updated_at)],
  ];
  if (p.error_code) rows.push(['Error', `${p.error_code}: ${p.error_description}`]);
  return h('dl', { class: 'details' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function refundsTable(refunds, currency) {
  const none = emptyRow(6, h('div', { class: 'state-box empty compact' }, h('p', { class: 'muted' }, 'No refunds yet.')));
  return h('div', { class: 'table-wrap' }, h('table', { class: 'table', test: 'refunds-table' },
    thead(['Refund ID', 'Amount', 'Status', 'Reason', 'Created', 'Processed'], ['Amount']),
    h('tbody', {}, refunds.length === 0 ? none : refunds.map((r) => h('tr', { test: 'refund-row', 'data-refund-id': r.id },
      h('td', { 'data-label': 'Refund' }, h('span', { class: 'mono', test: 'refund-id' }, r.id)),
      h('td', { 'data-label': 'Amount', class: 'num' }, h('span', { test: 'refund-amount', 'data-amount': r.amount }, formatAmount(r.amount, currency))),
      h('td', { 'data-label': 'Status' }, badge(r.status, 'refund-status')),
      h('td', { 'data-label': 'Reason' }, r.reason || h('span', { class: 'muted' }, '—')),
      h('td', { 'data-label': 'Created' }, when(r.created_at)),
      h('td', { 'data-label': 'Processed' }, when(r.processed_at)))))));
}

function refundForm(p, available, done, said) {
  const saidBox = said ? h('p', { class: 'notice notice-ok', test: 'refund-message', role: 'status' }, said) : null;
  if (p.status !== 'success') {
    return h('p', { class: 'muted' }, p.status === 'pending'
      ? 'This payment is still being processed. Refunds are possible once it succeeds.'
      : 'Only successful payments can be refunded.');
  }
  if (available <= 0) {
    return h('div', { class: 'stack' }, saidBox, h('p', { class: 'muted', test: 'refund-none-left' }, 'This payment has been refunded in full.'));
  }
  const digits = minorDigits(p.currency);
  const major = (minor) => (minor / 10 ** digits).toFixed(digits);
  const amount = h('input', { id: 'refund-amount', type: 'text', inputmode: 'decimal', test: 'refund-amount-input', value: major(available), autocomplete: 'off', 'aria-describedby': 'refund-available' });
  const reason = h('input', { id: 'refund-reason', type: 'text', test: 'refund-reason-input', maxlength: 255, placeholder: 'Customer requested', autocomplete: 'off' });
  const msg = saidBox || h('p', { test: 'refund-message', role: 'status', hidden: true });
  const button = h('button', { type: 'submit', class: 'btn btn-primary', test: 'refund-button' }, 'Refund');
  const full = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', test: 'refund-full-button' }, 'Refund everything left');
  full.addEventListener('click', () => { amount.value = major(available); amount.focus(); });
  const form = h('form', { class: 'stack', test: 'refund-form', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'refund-amount' }, `Amount (${p.currency})`), amount,
      h('p', { class: 'hint', id: 'refund-available' }, `${formatAmount(available, p.currency)} of ${formatAmount(p.amount, p.currency)} can still be refunded.`)),
    h('div', { class: 'field' }, h('label', { for: 'refund-reason' }, 'Reason ', h('span', { class: 'optional' }, '(optional)')), reason),
    msg,
    h('div', { class: 'form-actions' }, button, full));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const minor = parseAmount(amount.value, p.currency);
    if (minor === null) {
      notice(msg, 'error', `Enter an amount like ${major(Math.min(available, 10 ** digits * 100))}.`);
      amount.focus();
      return;
    }
    button.disabled = true;
    button.textContent = 'Refunding…';
    try {
      const body = { amount: minor };
      if (reason.value.trim()) body.reason = reason.value.trim();
      const r = await api(`/payments/${encodeURIComponent(p.id)}/refunds`, { method: 'POST', body, idempotencyKey: newKey() });
      await done(`Refund ${r.id} of ${formatAmount(r.amount, p.currency)} created.`);
    } catch (err) {
      notice(msg, 'error', err.message);
      button.disabled = false;
      button.textContent = 'Refund';
    }
  });
  return form;
}
