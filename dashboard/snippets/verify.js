// Receive and verify paygate webhooks with Node.js, no dependencies.
// Run: WEBHOOK_SECRET=whsec_... PORT=3000 node verify.js
// Webhook URL: https://your-server.example/webhooks/paygate
const http = require('node:http');
const crypto = require('node:crypto');

const secret = process.env.WEBHOOK_SECRET;
if (!secret) {
  console.error('set WEBHOOK_SECRET to the secret shown on the Webhooks page');
  process.exit(1);
}

// The key a webhook secret stands for: the bytes of the base64 after "whsec_"
// (a secret that is not of that form is used as it is).
const base64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const rest = secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : '';
const key = rest !== '' && base64.test(rest) ? Buffer.from(rest, 'base64') : Buffer.from(secret);

// The Standard Webhooks signature: one of webhook-signature's space-separated
// values is "v1," + base64 HMAC-SHA256 of "webhook-id.webhook-timestamp.body".
// It covers the id and the time too, and for 24 hours after you regenerate the
// secret it carries the old secret's signature as well. A timestamp more than
// 5 minutes off is refused, so that a recorded delivery cannot be replayed.
function verify(headers, body) {
  const id = headers['webhook-id'];
  const ts = headers['webhook-timestamp'];
  if (!id || !/^\d+$/.test(ts || '') || Math.abs(Date.now() / 1000 - Number(ts)) > 300) {
    return false;
  }
  const expected = Buffer.from('v1,' + crypto.createHmac('sha256', key).update(`${id}.${ts}.`).update(body).digest('base64'));
  return String(headers['webhook-signature'] || '').split(' ').some((sig) => {
    const given = Buffer.from(sig);
    return given.length === expected.length && crypto.timingSafeEqual(given, expected);
  });
}

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/webhooks/paygate') {
    res.writeHead(404).end();
    return;
  }
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const body = Buffer.concat(chunks); // verify these bytes, not re-serialised JSON
    if (!verify(req.headers, body)) {
      res.writeHead(401).end('invalid signature');
      return;
    }
    const event = JSON.parse(body);
    // webhook-id is signed and the same on every attempt: act on an event once.
    console.log('verified', event.event, req.headers['webhook-id']);
    res.writeHead(200).end('ok');
  });
});

server.listen(Number(process.env.PORT || 3000), () => {
  console.log('listening on port', server.address().port);
});
