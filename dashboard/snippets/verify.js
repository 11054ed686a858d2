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

// X-Webhook-Signature is the hex HMAC-SHA256 of the exact body bytes.
function verify(body, signature) {
  const expected = Buffer.from(crypto.createHmac('sha256', secret).update(body).digest('hex'));
  const given = Buffer.from(String(signature || ''));
  return given.length === expected.length && crypto.timingSafeEqual(given, expected);
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
    if (!verify(body, req.headers['x-webhook-signature'])) {
      res.writeHead(401).end('invalid signature');
      return;
    }
    const event = JSON.parse(body);
    // webhook-id is the same on every attempt: use it to act on an event once.
    console.log('verified', event.event, req.headers['webhook-id']);
    res.writeHead(200).end('ok');
  });
});

server.listen(Number(process.env.PORT || 3000), () => {
  console.log('listening on port', server.address().port);
});
