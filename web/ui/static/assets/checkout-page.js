// The hosted checkout page: /checkout?order_id=…&key=…[&embedded=true&origin=…]
//
// It validates as the customer types with the API's own rules, creates the
// payment through the publishable route, polls it with back-off until it is
// final, and, when embedded, tells the parent page, posting only to the
// origin it was given (never "*"; with no valid origin it posts nothing).
import { formatAmount } from './money.js';
import { APIError, newIdempotencyKey } from './api-client.js';

const params = new URLSearchParams(location.search);
const orderId = params.get('order_id') || '';
const key = params.get('key') || '';
const embedded = params.get('embedded') === 'true';
const parentOrigin = embedded ? originOf(params.get('origin')) : null;

const $ = (sel) => document.querySelector(sel);
const byTest = (id, root = document) => root.querySelector(`[data-test-id="${id}"]`);

const container = byTest('checkout-container');
const sections = {
  loading: $('#loading-state'),
  pay: $('#pay-section'),
  processing: $('#processing-state'),
  success: $('#success-state'),
  error: $('#error-state'),
};
const panel = $('#method-panel');
const forms = { upi: $('#upi-form'), card: $('#card-form') };
const tabs = [...document.querySelectorAll('[role="tab"]')];

let order = null;
let method = 'upi';
let lastBody = null; // the last payment request, for "Try again"
let busy = false;
const pageLife = new AbortController(); // aborted when the page goes away

if (embedded) document.body.classList.add('embedded');

// ---- talking to the parent page -------------------------------------------

function originOf(value) {
  if (!value) return null;
  try {
    const u = new URL(value);
    return (u.protocol === 'https:' || u.protocol === 'http:') && u.origin === value ? value : null;
  } catch {
    return null;
  }
}

function tellParent(message) {
  if (parentOrigin && window.parent !== window) window.parent.postMessage(message, parentOrigin);
}

// ---- the API ----------------------------------------------------------------

async function call(method, path, body, idempotencyKey) {
  const headers = { 'X-Api-Key': key };
  if (body) headers['Content-Type'] = 'application/json';
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  let res;
  try {
    res = await fetch(path, {
      method, headers, cache: 'no-store', signal: pageLife.signal,
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new APIError(0, null);
  }
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new APIError(res.status, data);
  return data;
}


const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- states -----------------------------------------------------------------

function show(name) {
  for (const [k, el] of Object.entries(sections)) el.hidden = k !== name;
  container.setAttribute('aria-busy', String(name === 'loading' || name === 'processing'));
}

function showError({ title, message, hint = '', retry = null, changeMethod = false }) {
  $('#error-title').textContent = title;
  byTest('error-message').textContent = message;
  $('#error-hint').textContent = hint;
  const retryButton = byTest('retry-button');
  retryButton.hidden = !retry;
  retryButton.onclick = retry;
  $('#change-method-button').hidden = !changeMethod;
  show('error');
  (retry ? retryButton : $('#error-title')).focus?.();
}

// ---- validation: the API's rules (docs/API.md), checked as the customer types

const VPA = /^[a-zA-Z0-9._-]+@[a-zA-Z0-9]+$/;

function luhn(digits) {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return digits.length > 0 && sum % 10 === 0;
}

function network(digits) {
  if (digits.startsWith('4')) return 'visa';
  if (digits.length < 2) return '';
  const p = Number(digits.slice(0, 2));
  if (p >= 51 && p <= 55) return 'mastercard';
  if (p === 34 || p === 37) return 'amex';
  if (p === 60 || p === 65 || (p >= 81 && p <= 89)) return 'rupay';
  return 'unknown';
}

const NETWORK_NAMES = { visa: 'Visa', mastercard: 'Mastercard', amex: 'Amex', rupay: 'RuPay', unknown: 'Card' };
// Lengths at which a number of the network is complete, so a Luhn failure
// is an error and not just an unfinished number.
const FULL_LENGTH = { visa: 16, mastercard: 16, amex: 15, rupay: 16, unknown: 19 };

const digitsOf = (s) => s.replace(/\D/g, '');

// Each check returns '' when valid, else a message and whether it is shown
// while typing ("now") or only once the customer has left the field.
const checks = {
  vpa(v) {
    v = v.trim();
    if (!v) return { msg: 'Enter your UPI ID' };
    if (/[^a-zA-Z0-9._@-]/.test(v) || (v.match(/@/g) || []).length > 1 || /@.*[._-]/.test(v)) {
      return { msg: 'A UPI ID has only letters, digits, dots, dashes or underscores, then @bank', now: true };
    }
    if (!VPA.test(v)) return { msg: 'Enter a UPI ID like name@bank' };
    return '';
  },
  'card-number'(v) {
    const d = digitsOf(v);
    if (!d) return { msg: 'Enter your card number' };
    const net = network(d) || 'unknown';
    if (d.length < 13) return { msg: 'Enter the full card number' };
    if (!luhn(d)) return { msg: 'This card number is not valid', now: d.length >= FULL_LENGTH[net] };
    return '';
  },
  expiry(v) {
    const d = digitsOf(v);
    if (d.length >= 2) {
      const month = Number(d.slice(0, 2));
      if (month < 1 || month > 12) return { msg: 'Enter a month from 01 to 12', now: true };
    }
    if (d.length < 4) return { msg: 'Enter the expiry date as MM/YY' };
    const month = Number(d.slice(0, 2));
    const year = 2000 + Number(d.slice(2, 4));
    // The API compares months in UTC: so does the page.
    const now = new Date();
    const y = now.getUTCFullYear();
    const m = now.getUTCMonth() + 1;
    if (year < y || (year === y && month < m)) return { msg: 'This card has expired', now: true };
    return '';
  },
  cvv(v) {
    const net = network(digitsOf(valueOf('card-number')));
    const want = net === 'amex' ? [4] : net && net !== 'unknown' ? [3] : [3, 4];
    if (!v) return { msg: 'Enter the security code' };
    if (!/^\d+$/.test(v)) return { msg: 'The security code has digits only', now: true };
    if (!want.includes(v.length)) {
      return { msg: `The security code has ${want.join(' or ')} digits`, now: v.length > Math.max(...want) };
    }
    return '';
  },
  'holder-name'(v) {
    return v.trim().length > 100 ? { msg: 'At most 100 characters', now: true } : '';
  },
};

const FIELDS = { upi: ['vpa'], card: ['card-number', 'expiry', 'cvv', 'holder-name'] };
const touched = new Set();

// field finds an input (or its message) in either form: only the chosen
// method's form is in the document.
function field(id) {
  return forms.upi.querySelector(`#${id}`) || forms.card.querySelector(`#${id}`);
}

function valueOf(id) {
  return field(id).value;
}

// What the pay hint calls each field.
const LABELS = {
  vpa: 'your UPI ID', 'card-number': 'the card number', expiry: 'the expiry date', cvv: 'the CVV',
  'holder-name': 'the name on the card',
};

// validate shows each field's message and enables the form's pay button
// only when every field is valid; while it is disabled, the hint under it
// says what is missing, so a grey button always has a reason beside it.
// force shows every message (on submit).
function validate(force = false) {
  const missing = [];
  const wrong = [];
  for (const id of FIELDS[method]) {
    const result = checks[id](valueOf(id));
    const visible = result && (force || touched.has(id) || result.now);
    setFieldError(id, visible ? result.msg : '');
    if (result) (valueOf(id).trim() === '' ? missing : wrong).push(LABELS[id]);
  }
  const ok = missing.length === 0 && wrong.length === 0;
  byTest('pay-button', forms[method]).disabled = !ok || busy;
  byTest('pay-hint', forms[method]).textContent = ok ? '' : payHint(missing, wrong);
  return ok;
}

// payHint: "To pay, enter the expiry date and the CVV, and check the card number."
function payHint(missing, wrong) {
  const list = (items) => (items.length < 2 ? items.join('') : `${items.slice(0, -1).join(', ')} and ${items.at(-1)}`);
  const parts = [];
  if (missing.length) parts.push(`enter ${list(missing)}`);
  if (wrong.length) parts.push(`check ${list(wrong)}`);
  return `To pay, ${parts.join(', and ')}.`;
}

function setFieldError(id, msg) {
  field(`${id}-error`).textContent = msg;
  field(id).setAttribute('aria-invalid', msg ? 'true' : 'false');
}

// ---- formatting as the customer types -----------------------------------------

// keepCaret rewrites an input's value and puts the caret after the same
// number of digits as before.
function keepCaret(input, formatted) {
  const focused = document.activeElement === input;
  const digitsBefore = focused ? digitsOf(input.value.slice(0, input.selectionStart ?? input.value.length)).length : 0;
  input.value = formatted;
  if (!focused) return;
  let pos = 0;
  for (let seen = 0; pos < formatted.length && seen < digitsBefore; pos++) {
    if (/\d/.test(formatted[pos])) seen++;
  }
  input.setSelectionRange(pos, pos);
}

function formatCardNumber(input) {
  const d = digitsOf(input.value).slice(0, 19);
  keepCaret(input, d.replace(/(\d{4})(?=\d)/g, '$1 '));
  const net = network(d);
  const badge = field('card-network');
  badge.dataset.network = net;
  badge.textContent = net ? NETWORK_NAMES[net] : '';
  const cvv = field('cvv');
  cvv.maxLength = net === 'amex' || net === 'unknown' || !net ? 4 : 3;
  cvv.placeholder = net === 'amex' ? '••••' : '•••';
}

function formatExpiry(input) {
  let d = digitsOf(input.value).slice(0, 4);
  if (d.length === 1 && d > '1') d = '0' + d; // "4" can only mean April
  keepCaret(input, d.length > 2 ? `${d.slice(0, 2)}/${d.slice(2)}` : d);
}

const formatters = {
  'card-number': formatCardNumber,
  expiry: formatExpiry,
  cvv: (input) => { input.value = digitsOf(input.value).slice(0, input.maxLength); },
};

// ---- methods (tabs) -------------------------------------------------------------

function selectMethod(next, focus = false) {
  method = next;
  for (const tab of tabs) {
    const on = tab.dataset.method === next;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
    if (on && focus) tab.focus();
  }
  // Only the chosen method's form is in the page, so there is one pay button.
  panel.replaceChildren(forms[next]);
  validate();
}

for (const tab of tabs) {
  tab.addEventListener('click', () => selectMethod(tab.dataset.method));
  tab.addEventListener('keydown', (e) => {
    const i = tabs.indexOf(tab);
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    selectMethod(tabs[(to + tabs.length) % tabs.length].dataset.method, true);
  });
}

for (const form of Object.values(forms)) {
  form.addEventListener('input', (e) => {
    formatters[e.target.id]?.(e.target);
    validate();
  });
  // Leaving a field shows its message: one that holds something, or an
  // empty one the customer moved on from to another field of the form
  // (leaving the form, say for the other method's tab, is no mistake).
  form.addEventListener('focusout', (e) => {
    if (e.target.id in checks && (e.target.value !== '' || form.contains(e.relatedTarget))) touched.add(e.target.id);
    validate();
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    for (const id of FIELDS[method]) touched.add(id);
    if (validate(true)) pay(requestBody());
  });
}

function requestBody() {
  if (method === 'upi') return { order_id: orderId, method: 'upi', vpa: valueOf('vpa').trim() };
  const exp = digitsOf(valueOf('expiry'));
  return {
    order_id: orderId,
    method: 'card',
    card: {
      number: digitsOf(valueOf('card-number')),
      expiry_month: exp.slice(0, 2),
      expiry_year: exp.slice(2, 4),
      cvv: valueOf('cvv'),
      holder_name: valueOf('holder-name').trim(),
    },
  };
}

// ---- paying -----------------------------------------------------------------------

// The API names a field on a validation error; the page's input for it.
const INPUT_OF_FIELD = {
  vpa: 'vpa', 'card.number': 'card-number', 'card.expiry_month': 'expiry', 'card.expiry_year': 'expiry',
  'card.cvv': 'cvv', 'card.holder_name': 'holder-name',
};

async function pay(body) {
  if (busy) return;
  busy = true;
  lastBody = body;
  byTest('processing-message').textContent = 'Confirming your payment…';
  show('processing');
  try {
    // A fresh key per attempt: a network retry of one click cannot pay
    // twice, and "Try again" is a new payment.
    const created = await call('POST', '/api/v1/payments/public', body, newIdempotencyKey('chk_'));
    byTest('processing-message').textContent = body.method === 'upi'
      ? 'Waiting for you to approve the payment in your UPI app…'
      : 'Confirming the payment with your bank…';
    const payment = await poll(created.id);
    if (payment) finish(payment);
  } catch (err) {
    if (err.name !== 'AbortError') await refused(err);
  } finally {
    busy = false;
  }
}

// poll reads the payment until it is final, waiting longer each time; it
// stops (null) when the page is closed.
async function poll(id) {
  let delay = 300;
  let failures = 0;
  while (!pageLife.signal.aborted) {
    await sleep(delay);
    if (pageLife.signal.aborted) break;
    try {
      const p = await call('GET', `/api/v1/payments/${encodeURIComponent(id)}/public`);
      failures = 0;
      if (p.status !== 'pending') return p;
    } catch (err) {
      if (err.name === 'AbortError' || (err.status >= 400 && err.status < 500)) throw err;
      if (++failures >= 3) byTest('processing-message').textContent = 'The connection is unstable; still checking your payment…';
    }
    delay = Math.min(delay * 1.6, 5000);
  }
  return null;
}

function finish(p) {
  if (p.status === 'success') {
    byTest('payment-id').textContent = p.id;
    $('#success-detail').textContent = `${formatAmount(p.amount, p.currency)} paid to ${order.merchant_name}.`;
    $('#success-hint').textContent = parentOrigin ? 'Returning you to the shop…' : 'You can close this page now.';
    for (const id of ['card-number', 'cvv', 'expiry']) field(id).value = '';
    show('success');
    tellParent({ type: 'payment_success', data: { paymentId: p.id, orderId, amount: p.amount } });
    return;
  }
  const error = p.error_description || 'Payment could not be processed';
  showError({
    title: 'Payment failed',
    message: error,
    hint: 'No money was taken. Try again, or pay another way.',
    retry: () => pay(lastBody),
    changeMethod: true,
  });
  tellParent({ type: 'payment_failed', data: { paymentId: p.id, orderId, error } });
}

// refused handles a payment the API would not create.
async function refused(err) {
  const input = INPUT_OF_FIELD[err.field];
  if (input && err.status === 400) {
    show('pay');
    selectMethod(input === 'vpa' ? 'upi' : 'card');
    setFieldError(input, err.message);
    field(input).focus();
    return;
  }
  if (err.field === 'order_id' && (await loadOrder()) === false) return;
  // Too many failed payments on this order: final for it, so no retry.
  const final = err.code === 'RATE_LIMITED';
  showError({
    title: err.status ? 'Payment not accepted' : 'Connection problem',
    message: err.status ? err.message : 'We could not reach the payment service. Check your connection and try again.',
    hint: final ? 'Ask the shop for a new payment link.' : '',
    retry: final ? null : () => pay(lastBody),
    changeMethod: !final,
  });
}

// ---- the order ------------------------------------------------------------------

// loadOrder shows the order; it returns false when the order cannot be paid
// (and says why on the page).
async function loadOrder() {
  byTest('order-id').textContent = orderId;
  if (!orderId || !key) {
    showError({ title: 'Incomplete checkout link', message: 'This link is missing its order or key. Ask the shop for a new payment link.' });
    return false;
  }
  try {
    order = await call('GET', `/api/v1/orders/${encodeURIComponent(orderId)}/public`);
  } catch (err) {
    if (err.name === 'AbortError') return false;
    if (err.status === 404) {
      showError({ title: 'Order not found', message: 'We could not find this order. The link may be wrong, or the order belongs to another shop.' });
    } else if (err.status === 401) {
      showError({ title: 'Checkout unavailable', message: 'This checkout link has an invalid key. Ask the shop for a new payment link.' });
    } else {
      showError({ title: 'Could not load the order', message: err.status ? err.message : 'Check your connection and try again.', retry: start });
    }
    return false;
  }
  const amount = formatAmount(order.amount, order.currency);
  byTest('order-amount').textContent = amount;
  byTest('order-amount').hidden = false;
  $('#amount-label').hidden = false;
  $('#merchant-name').textContent = order.merchant_name;
  $('#merchant-mark').textContent = (order.merchant_name.trim()[0] || '·').toUpperCase();
  document.title = `Pay ${amount} to ${order.merchant_name}`;
  for (const b of document.querySelectorAll('[data-test-id="pay-button"]')) b.textContent = `Pay ${amount}`;
  if (order.status === 'paid') {
    showError({ title: 'Already paid', message: 'This order has already been paid. There is nothing more to pay.' });
    return false;
  }
  return true;
}

async function start() {
  show('loading');
  if (await loadOrder()) {
    show('pay');
    selectMethod(method);
    field(FIELDS[method][0]).focus();
  }
}

$('#change-method-button').addEventListener('click', () => {
  show('pay');
  validate();
  tabs.find((t) => t.dataset.method === method).focus();
});

// Escape inside the embedded page asks the parent to close the modal (the
// parent cannot see keys pressed in the frame).
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && parentOrigin) tellParent({ type: 'close_modal' });
});

// Closing or leaving the page stops polling at once.
addEventListener('pagehide', () => pageLife.abort());

start();
