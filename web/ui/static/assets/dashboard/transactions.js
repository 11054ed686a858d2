// Transactions: every payment, newest first, filtered by status, a page at
// a time. The filter and page live in the URL, so reload and back work.
import { api, query } from './api.js';
import { h, badge, when, loading, empty, emptyRow, failure, thead } from './dom.js';
import { formatAmount } from '../money.js';

const PAGE = 20;
const STATUSES = ['', 'pending', 'success', 'failed'];

export function render(main) {
  const params = new URLSearchParams(location.search);
  let status = STATUSES.includes(params.get('status')) ? params.get('status') : '';
  let offset = Math.max(0, Number.parseInt(params.get('offset'), 10) || 0);

  const filter = h('select', { id: 'status-filter', test: 'status-filter' },
    STATUSES.map((s) => h('option', { value: s }, s ? s[0].toUpperCase() + s.slice(1) : 'All statuses')));
  filter.value = status;
  const body = h('div', { class: 'card card-flush' });
  main.replaceChildren(
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Transactions'), h('p', { class: 'muted' }, 'Every payment on your account, newest first.')),
      h('div', { class: 'inline-field' }, h('label', { for: 'status-filter' }, 'Status'), filter)),
    body);

  async function load() {
    body.replaceChildren(loading('Loading transactions…'));
    const url = new URL(location.href);
    url.search = query({ status, offset: offset || '' });
    history.replaceState(null, '', url);
    let list;
    try {
      list = await api(`/payments${query({ limit: PAGE, offset, status })}`);
    } catch (err) {
      body.replaceChildren(failure(err, load));
      return;
    }
    if (list.total === 0) {
      body.replaceChildren(transactionsTable([], status
        ? empty(`No ${status} payments`, 'Payments with this status will show up here.')
        : empty('No payments yet', 'Create an order and open the checkout: payments appear here as they happen.',
          h('a', { class: 'btn btn-secondary btn-sm', href: '/dashboard/docs' }, 'How to take a payment'))));
      return;
    }
    if (list.data.length === 0 && offset > 0) {
      offset = 0;
      load();
      return;
    }
    const prev = h('button', { type: 'button', class: 'btn btn-secondary btn-sm', test: 'page-prev', disabled: offset === 0 }, 'Previous');
    const next = h('button', { type: 'button', class: 'btn btn-secondary btn-sm', test: 'page-next', disabled: offset + list.data.length >= list.total }, 'Next');
    prev.addEventListener('click', () => { offset = Math.max(0, offset - PAGE); load(); });
    next.addEventListener('click', () => { offset += PAGE; load(); });
    body.replaceChildren(
      transactionsTable(list.data),
      h('div', { class: 'pager' },
        h('span', { class: 'muted small', test: 'page-info' }, `${offset + 1}–${offset + list.data.length} of ${list.total}`),
        h('div', { class: 'pager-buttons' }, prev, next)));
  }

  filter.addEventListener('change', () => { status = filter.value; offset = 0; load(); });
  load();
}

// transactionsTable is the payments table with the ids of docs/API.md; the
// home page shows the latest few with it too. With no payments it holds
// the empty state box in its one row.
export function transactionsTable(payments, emptyBox) {
  const cols = ['Payment ID', 'Order ID', 'Amount', 'Method', 'Status', 'Created'];
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'table', test: 'transactions-table' },
      thead(cols, ['Amount']),
      h('tbody', {}, payments.length ? payments.map(row) : emptyRow(cols.length, emptyBox))));
}

function row(p) {
  return h('tr', { test: 'transaction-row', 'data-payment-id': p.id },
    h('td', { 'data-label': 'Payment' }, h('a', { class: 'mono', href: `/dashboard/transactions/${encodeURIComponent(p.id)}`, test: 'payment-id' }, p.id)),
    h('td', { 'data-label': 'Order' }, h('span', { class: 'mono', test: 'order-id' }, p.order_id)),
    h('td', { 'data-label': 'Amount', class: 'num' }, h('span', { test: 'amount', 'data-amount': p.amount, 'data-currency': p.currency }, formatAmount(p.amount, p.currency))),
    h('td', { 'data-label': 'Method' }, h('span', { class: 'method', test: 'method', title: methodDetail(p) }, p.method)),
    h('td', { 'data-label': 'Status' }, badge(p.status, 'status')),
    h('td', { 'data-label': 'Created' }, when(p.created_at, 'created-at')));
}

export function methodDetail(p) {
  if (p.method === 'upi') return p.vpa || 'UPI';
  const net = { visa: 'Visa', mastercard: 'Mastercard', amex: 'Amex', rupay: 'RuPay' }[p.card_network] || 'Card';
  return `${net} •••• ${p.card_last4 || ''}`.trim();
}
