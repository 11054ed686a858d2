// Webhooks: the endpoint (URL and events), its signing secret, a test
// event, and the delivery logs with each log's attempts and a retry.
import { api, query, newKey } from './api.js';
import { h, badge, when, loading, empty, emptyRow, failure, notice, copyButton, thead } from './dom.js';

const EVENTS = ['payment.created', 'payment.success', 'payment.failed', 'refund.created', 'refund.processed', 'webhook.test'];
const PAGE = 20;

export async function render(main) {
  main.replaceChildren(loading('Loading webhooks…'));
  let config;
  try {
    config = await api('/webhooks/config');
  } catch (err) {
    main.replaceChildren(failure(err, () => render(main)));
    return;
  }
  const logs = logsSection();
  main.replaceChildren(h('div', { class: 'page' },
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Webhooks'), h('p', { class: 'muted' }, 'paygate POSTs an event to your server whenever a payment or refund changes.'))),
    h('div', { class: 'grid-main' }, configSection(config, logs.reload), secretSection(config)),
    logs.el));
  logs.reload();
}

function configSection(config, reloadLogs) {
  const url = h('input', { id: 'webhook-url', type: 'url', test: 'webhook-url-input', value: config.webhook_url, placeholder: 'https://your-server.example/webhooks/paygate', autocomplete: 'off', spellcheck: 'false' });
  const all = config.events.includes('*');
  const allBox = h('input', { type: 'checkbox', id: 'event-all', value: '*', test: 'webhook-event-all', checked: all });
  const boxes = EVENTS.map((e) => h('input', { type: 'checkbox', id: `event-${e}`, value: e, 'data-event': e, checked: all || config.events.includes(e), disabled: all }));
  allBox.addEventListener('change', () => boxes.forEach((b) => { b.disabled = allBox.checked; if (allBox.checked) b.checked = true; }));
  const msg = h('p', { role: 'status', test: 'webhook-config-message', hidden: true });
  const save = h('button', { type: 'submit', class: 'btn btn-primary', test: 'save-webhook-button' }, 'Save');
  const test = h('button', { type: 'button', class: 'btn btn-secondary', test: 'test-webhook-button', disabled: !config.webhook_url }, 'Send test event');
  const form = h('form', { class: 'stack', test: 'webhook-config-form', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'webhook-url' }, 'Endpoint URL'), url,
      h('p', { class: 'hint' }, 'Leave empty to stop deliveries. Answer 2xx within 5 seconds; other answers are retried after 1 min, 5 min, 30 min and 2 h.')),
    h('fieldset', { class: 'events' },
      h('legend', { class: 'label' }, 'Events'),
      h('label', { class: 'check check-strong' }, allBox, 'All events'),
      h('div', { class: 'check-grid' }, boxes.map((b) => h('label', { class: 'check' }, b, h('span', { class: 'mono' }, b.value))))),
    msg,
    h('div', { class: 'form-actions' }, save, test));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const events = allBox.checked ? ['*'] : boxes.filter((b) => b.checked).map((b) => b.value);
    if (events.length === 0) {
      notice(msg, 'error', 'Choose at least one event, or all events.');
      return;
    }
    save.disabled = true;
    try {
      const saved = await api('/webhooks/config', { method: 'PUT', body: { webhook_url: url.value.trim(), events } });
      url.value = saved.webhook_url;
      test.disabled = !saved.webhook_url;
      notice(msg, 'ok', saved.webhook_url ? 'Saved. New events will be delivered to this URL.' : 'Saved. Deliveries are off until you set a URL.');
    } catch (err) {
      notice(msg, 'error', err.message);
      if (err.field === 'webhook_url') url.focus();
    } finally {
      save.disabled = false;
    }
  });
  test.addEventListener('click', async () => {
    test.disabled = true;
    try {
      const r = await api('/webhooks/test', { method: 'POST', body: {}, idempotencyKey: newKey() });
      notice(msg, 'ok', `Test event scheduled (${r.webhook_id}).`);
      reloadLogs();
    } catch (err) {
      notice(msg, 'error', err.message);
    } finally {
      test.disabled = false;
    }
  });
  return h('section', { class: 'card', test: 'webhook-config', 'aria-labelledby': 'config-title' },
    h('div', { class: 'card-head' }, h('h2', { id: 'config-title' }, 'Endpoint')),
    form);
}

function secretSection(config) {
  let secret = config.webhook_secret;
  const code = h('code', { class: 'secret-box', test: 'webhook-secret' }, secret);
  const msg = h('p', { role: 'status', hidden: true });
  const regen = h('button', { type: 'button', class: 'btn btn-secondary', test: 'regenerate-secret-button' }, 'Regenerate secret');
  regen.addEventListener('click', async () => {
    regen.disabled = true;
    try {
      const r = await api('/webhooks/regenerate-secret', { method: 'POST', body: {} });
      secret = r.webhook_secret;
      code.textContent = secret;
      notice(msg, 'ok', 'New secret in use. For 24 hours webhook-signature carries the old secret\'s signature too, so receivers that check it keep working while you switch; X-Webhook-Signature is made with the new secret only, so receivers that check it must switch now.');
    } catch (err) {
      notice(msg, 'error', err.message);
    } finally {
      regen.disabled = false;
    }
  });
  return h('section', { class: 'card', 'aria-labelledby': 'secret-title' },
    h('div', { class: 'card-head' }, h('h2', { id: 'secret-title' }, 'Signing secret')),
    h('div', { class: 'stack' },
      h('div', { class: 'secret-row' }, code, copyButton(() => secret, 'Copy webhook secret')),
      h('p', { class: 'hint' }, 'Every delivery carries X-Webhook-Signature, the hex HMAC-SHA256 of the body under this secret, and Standard Webhooks headers. See Docs for code that checks them.'),
      msg,
      h('div', { class: 'form-actions' }, regen)));
}

function logsSection() {
  let offset = 0;
  let status = '';
  let timer = 0;
  addEventListener('pagehide', () => clearTimeout(timer));
  const filter = h('select', { id: 'log-status', test: 'webhook-status-filter' },
    ['', 'pending', 'success', 'failed'].map((s) => h('option', { value: s }, s ? s[0].toUpperCase() + s.slice(1) : 'All statuses')));
  const refreshButton = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', test: 'refresh-webhooks-button' }, 'Refresh');
  const body = h('div', {});
  const el = h('section', { class: 'card card-flush', 'aria-labelledby': 'logs-title' },
    h('div', { class: 'card-head card-head-pad' },
      h('h2', { id: 'logs-title' }, 'Deliveries'),
      h('div', { class: 'card-tools' }, h('label', { for: 'log-status', class: 'visually-hidden' }, 'Status'), filter, refreshButton)),
    body);

  async function reload(quiet = false) {
    clearTimeout(timer);
    if (!quiet) body.replaceChildren(loading('Loading deliveries…'));
    let list;
    try {
      list = await api(`/webhooks${query({ limit: PAGE, offset, status })}`);
    } catch (err) {
      body.replaceChildren(failure(err, () => reload()));
      return;
    }
    const table = (rows) => h('div', { class: 'table-wrap' }, h('table', { class: 'table', test: 'webhook-logs-table' },
      thead(['Event', 'Status', 'Attempts', 'Last attempt', 'Response', ''], ['Attempts']),
      h('tbody', {}, rows)));
    if (list.total === 0) {
      body.replaceChildren(table(emptyRow(6, empty(status ? `No ${status} deliveries` : 'No deliveries yet',
        'Set an endpoint URL and send a test event, or take a payment: each event shows up here.'))));
      return;
    }
    const open = new Set([...body.querySelectorAll('[data-test-id="webhook-log-item"][aria-expanded="true"]')].map((r) => r.dataset.webhookId));
    const rows = list.data.flatMap((log) => logRows(log, open.has(log.id), () => reload(true)));
    const prev = h('button', { type: 'button', class: 'btn btn-secondary btn-sm', disabled: offset === 0 }, 'Previous');
    const next = h('button', { type: 'button', class: 'btn btn-secondary btn-sm', disabled: offset + list.data.length >= list.total }, 'Next');
    prev.addEventListener('click', () => { offset = Math.max(0, offset - PAGE); reload(); });
    next.addEventListener('click', () => { offset += PAGE; reload(); });
    body.replaceChildren(
      table(rows),
      h('div', { class: 'pager' },
        h('span', { class: 'muted small' }, `${offset + 1}–${offset + list.data.length} of ${list.total}`),
        h('div', { class: 'pager-buttons' }, prev, next)));
    // Deliveries in flight change on their own: look again while any is pending.
    if (list.data.some((l) => l.status === 'pending')) timer = setTimeout(() => reload(true), 2000);
  }

  filter.addEventListener('change', () => { status = filter.value; offset = 0; reload(); });
  refreshButton.addEventListener('click', () => reload());
  return { el, reload };
}

function logRows(log, expanded, reload) {
  const detailRow = h('tr', { class: 'detail-row', hidden: !expanded },
    h('td', { colspan: 6 }, h('div', { class: 'attempts', test: 'webhook-attempt-history' })));
  const toggle = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', test: 'webhook-details-button', 'aria-expanded': String(expanded) }, expanded ? 'Hide' : 'Attempts');
  const retry = h('button', { type: 'button', class: 'btn btn-secondary btn-sm', test: 'retry-webhook-button', 'data-webhook-id': log.id }, 'Retry');
  const row = h('tr', { test: 'webhook-log-item', 'data-webhook-id': log.id, 'aria-expanded': String(expanded) },
    h('td', { 'data-label': 'Event' }, h('span', { class: 'mono', test: 'webhook-event' }, log.event)),
    h('td', { 'data-label': 'Status' }, badge(log.status, 'webhook-status')),
    h('td', { 'data-label': 'Attempts', class: 'num' }, h('span', { test: 'webhook-attempts' }, String(log.attempts))),
    h('td', { 'data-label': 'Last attempt' }, when(log.last_attempt_at, 'webhook-last-attempt')),
    h('td', { 'data-label': 'Response' }, h('span', { class: 'mono', test: 'webhook-response-code' }, log.response_code === null ? '—' : String(log.response_code))),
    h('td', { class: 'actions' }, toggle, retry));
  const showAttempts = async () => {
    const box = detailRow.querySelector('.attempts');
    box.replaceChildren(loading('Loading attempts…'));
    try {
      box.replaceChildren(attempts(await api(`/webhooks/${encodeURIComponent(log.id)}`)));
    } catch (err) {
      box.replaceChildren(failure(err, showAttempts));
    }
  };
  toggle.addEventListener('click', () => {
    const open = detailRow.hidden;
    detailRow.hidden = !open;
    row.setAttribute('aria-expanded', String(open));
    toggle.setAttribute('aria-expanded', String(open));
    toggle.textContent = open ? 'Hide' : 'Attempts';
    if (open) showAttempts();
  });
  retry.addEventListener('click', async () => {
    retry.disabled = true;
    retry.textContent = 'Retrying…';
    try {
      await api(`/webhooks/${encodeURIComponent(log.id)}/retry`, { method: 'POST', body: {}, idempotencyKey: newKey() });
      reload();
    } catch (err) {
      retry.disabled = false;
      retry.textContent = 'Retry';
      retry.title = err.message;
    }
  });
  if (expanded) showAttempts();
  return [row, detailRow];
}

function attempts(detail) {
  const list = detail.attempt_history;
  return h('div', { class: 'stack' },
    h('p', { class: 'muted small' }, 'Event ', h('span', { class: 'mono' }, detail.id), ', created ', when(detail.created_at),
      detail.next_retry_at ? [', next attempt ', when(detail.next_retry_at)] : ''),
    list.length === 0
      ? h('p', { class: 'muted' }, 'No attempt yet: the first one is on its way.')
      : h('ol', { class: 'attempt-list' }, list.map((a, i) => h('li', { class: 'attempt', test: 'webhook-attempt' },
        h('div', { class: 'attempt-head' },
          h('strong', {}, `Attempt ${i + 1}`),
          a.response_code !== null
            ? h('span', { class: `badge ${a.response_code >= 200 && a.response_code < 300 ? 'badge-success' : 'badge-failed'}` }, `HTTP ${a.response_code}`)
            : h('span', { class: 'badge badge-failed' }, 'no response'),
          when(a.attempted_at),
          h('span', { class: 'muted small' }, `${a.duration_ms} ms`)),
        a.error && h('p', { class: 'attempt-error' }, a.error),
        a.response_body && h('pre', { class: 'code code-sm' }, a.response_body)))),
    h('details', {}, h('summary', {}, 'Payload'), h('pre', { class: 'code code-sm' }, JSON.stringify(detail.payload, null, 2))));
}
