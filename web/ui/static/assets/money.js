// Amounts are integers in the currency's minor unit (paise for INR). The
// number of minor digits is the one Intl knows for the currency, so 50000 INR
// is ₹500.00 and 500 JPY is ¥500.

const formats = new Map();

function formatter(currency) {
  let f = formats.get(currency);
  if (!f) {
    f = new Intl.NumberFormat(undefined, { style: 'currency', currency });
    formats.set(currency, f);
  }
  return f;
}

// minorDigits is how many minor-unit digits currency has (2 for INR).
export function minorDigits(currency) {
  try {
    return formatter(currency).resolvedOptions().maximumFractionDigits;
  } catch {
    return 2;
  }
}

// formatAmount formats an amount in minor units for people to read.
export function formatAmount(minor, currency) {
  try {
    return formatter(currency).format(minor / 10 ** minorDigits(currency));
  } catch {
    return `${(minor / 100).toFixed(2)} ${currency}`;
  }
}

// parseAmount reads "250" or "250.5" in major units into minor units, or
// returns null when it is not a positive amount with at most the currency's
// minor digits.
export function parseAmount(text, currency) {
  const digits = minorDigits(currency);
  const m = /^\s*(\d{1,15})(?:[.,](\d*))?\s*$/.exec(text);
  if (!m || (m[2] || '').length > digits) return null;
  const minor = Number(m[1]) * 10 ** digits + Number((m[2] || '').padEnd(digits, '0') || 0);
  return minor > 0 && Number.isSafeInteger(minor) ? minor : null;
}
