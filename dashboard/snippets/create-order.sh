curl -X POST {{.BaseURL}}/api/v1/orders \
  -H 'X-Api-Key: {{.Key}}' \
  -H "X-Api-Secret: $PAYGATE_API_SECRET" \
  -H 'Content-Type: application/json' \
  -H 'Idempotency-Key: rcpt_1001' \
  -d '{"amount": 50000, "currency": "INR", "receipt": "rcpt_1001"}'
