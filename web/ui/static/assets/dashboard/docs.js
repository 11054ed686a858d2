// Docs: the three steps of an integration, with code filled in for the
// signed-in merchant by the server (the secret is never filled in).
import { api } from './api.js';
import { h, loading, failure, copyButton } from './dom.js';

export async function render(main, me) {
  main.replaceChildren(loading('Loading docs…'));
  let snippets;
  try {
    snippets = await api('/docs');
  } catch (err) {
    main.replaceChildren(failure(err, () => render(main, me)));
    return;
  }
  main.replaceChildren(h('div', { class: 'page docs', test: 'api-docs' },
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Integration guide'),
        h('p', { class: 'muted' }, 'Three steps take a payment: create an order on your server, open the checkout in the browser, and trust the webhook.'))),
    h('section', { class: 'card doc-section', test: 'section-create-order', 'aria-labelledby': 'doc-order' },
      h('h2', { id: 'doc-order' }, h('span', { class: 'step' }, '1'), 'Create an order'),
      h('p', {}, 'From your server, with your key and secret (keep the secret there: set ', h('code', {}, 'PAYGATE_API_SECRET'),
        ' in its environment). Amounts are in the smallest unit: 50000 paise is ₹500.00. The ', h('code', {}, 'Idempotency-Key'),
        ' makes a retried request safe.'),
      code(snippets.create_order, 'code-snippet-create-order', 'Shell')),
    h('section', { class: 'card doc-section', test: 'section-sdk-integration', 'aria-labelledby': 'doc-sdk' },
      h('h2', { id: 'doc-sdk' }, h('span', { class: 'step' }, '2'), 'Open the checkout'),
      h('p', {}, 'Add the SDK to your page and open it with the order id. The customer pays in a secure frame; ',
        h('code', {}, 'onSuccess'), ' gets the payment id, ', h('code', {}, 'onFailure'), ' the reason, and ',
        h('code', {}, 'onClose'), ' fires when the customer closes it. Or send customers to the hosted page: ',
        h('code', {}, `/checkout?order_id=…&key=${me.api_key}`), '.'),
      code(snippets.sdk, 'code-snippet-sdk', 'HTML')),
    h('section', { class: 'card doc-section', test: 'section-webhook-verification', 'aria-labelledby': 'doc-hooks' },
      h('h2', { id: 'doc-hooks' }, h('span', { class: 'step' }, '3'), 'Verify webhooks'),
      h('p', {}, 'Before you act on an event, check that paygate sent it. ', h('code', {}, 'webhook-signature'),
        ' is the Standard Webhooks signature (standardwebhooks.com) of ', h('code', {}, 'webhook-id'), ', ',
        h('code', {}, 'webhook-timestamp'), ' and the raw body under your webhook secret (Webhooks page); with a generated secret (not the test merchant\'s fixed one) any official Standard Webhooks library verifies it too. ',
        'For 24 hours after you regenerate the secret it carries the old secret\'s signature too, so a receiver keeps working while you switch. ',
        'Compare in constant time, on the bytes you received, and refuse a timestamp more than 5 minutes off so that a recorded delivery cannot be replayed. ',
        '(', h('code', {}, 'X-Webhook-Signature'), ', the hex HMAC-SHA256 of the body alone, is made with the current secret only.)'),
      h('div', { test: 'code-snippet-webhook', class: 'stack' },
        h('h3', {}, 'Node.js'),
        code(snippets.webhook_node, 'code-snippet-webhook-node', 'JavaScript'),
        h('h3', {}, 'Go'),
        code(snippets.webhook_go, 'code-snippet-webhook-go', 'Go')))));
}

function code(text, test, language) {
  return h('div', { class: 'code-block' },
    h('div', { class: 'code-head' }, h('span', { class: 'muted small' }, language), copyButton(() => text, `Copy ${language} code`)),
    h('pre', { class: 'code', test, tabindex: '0' }, h('code', {}, text)));
}
