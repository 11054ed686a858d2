// Overview: credentials, totals, and the last 14 days as a picture (bars
// for payments per day, a line for the success rate), drawn as inline SVG.
import { api, query } from './api.js';
import { h, s, loading, failure, empty, copyButton, thead } from './dom.js';
import { formatAmount } from '../money.js';
import { transactionsTable } from './transactions.js';

export async function render(main, me) {
  main.replaceChildren(loading('Loading your overview…'));
  let stats;
  let recent;
  try {
    [stats, recent] = await Promise.all([api('/stats'), api(`/payments${query({ limit: 5 })}`)]);
  } catch (err) {
    main.replaceChildren(failure(err, () => render(main, me)));
    return;
  }
  const chartBox = h('div', { class: 'chart' });
  main.replaceChildren(h('div', { class: 'page', test: 'dashboard' },
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Overview'), h('p', { class: 'muted' }, `Welcome back, ${me.name}.`))),
    statsCards(stats),
    h('div', { class: 'grid-main' },
      h('section', { class: 'card', 'aria-labelledby': 'chart-title' },
        h('div', { class: 'card-head' },
          h('h2', { id: 'chart-title' }, 'Last 14 days'),
          h('div', { class: 'legend', 'aria-hidden': 'true' },
            h('span', { class: 'legend-item' }, h('i', { class: 'swatch swatch-success' }), 'Succeeded'),
            h('span', { class: 'legend-item' }, h('i', { class: 'swatch swatch-failed' }), 'Failed'),
            h('span', { class: 'legend-item' }, h('i', { class: 'swatch swatch-pending' }), 'Pending'),
            h('span', { class: 'legend-item' }, h('i', { class: 'swatch swatch-line' }), 'Success rate'))),
        chartBox,
        chartTable(stats)),
      credentials(me)),
    h('section', { class: 'card card-flush' },
      h('div', { class: 'card-head card-head-pad' },
        h('h2', {}, 'Recent transactions'),
        h('a', { href: '/dashboard/transactions', class: 'btn btn-ghost btn-sm' }, 'View all')),
      transactionsTable(recent.data, empty('No payments yet', 'Payments show up here as soon as customers pay.',
        h('a', { class: 'btn btn-secondary btn-sm', href: '/dashboard/docs' }, 'Take your first payment'))))));

  const draw = () => chartBox.replaceChildren(chart(stats, Math.max(280, chartBox.clientWidth)));
  draw();
  let pending = 0;
  const onResize = () => { cancelAnimationFrame(pending); pending = requestAnimationFrame(draw); };
  addEventListener('resize', onResize);
}

function statsCards(stats) {
  const collected = stats.collected.length
    ? stats.collected.map((a) => formatAmount(a.amount, a.currency)).join(' + ')
    : formatAmount(0, 'INR');
  const pending = stats.total_transactions - stats.succeeded - stats.failed;
  const rate = stats.success_rate === null ? '—' : `${(stats.success_rate * 100).toFixed(1).replace(/\.0$/, '')}%`;
  return h('section', { class: 'stats', test: 'stats-container', 'aria-label': 'Totals' },
    stat('Total transactions', h('strong', { class: 'stat-value', test: 'total-transactions' }, String(stats.total_transactions)),
      pending > 0 ? `${pending} pending` : 'All payments, all time'),
    stat('Total collected', h('strong', { class: 'stat-value', test: 'total-amount' }, collected), 'Successful payments'),
    stat('Success rate', h('strong', { class: 'stat-value', test: 'success-rate' }, rate),
      stats.success_rate === null ? 'No decided payments yet' : `${stats.succeeded} of ${stats.succeeded + stats.failed} decided payments`));
}

function stat(label, value, sub) {
  return h('div', { class: 'stat' }, h('span', { class: 'stat-label' }, label), value, h('span', { class: 'stat-sub' }, sub));
}

function credentials(me) {
  return h('section', { class: 'card', test: 'api-credentials', 'aria-labelledby': 'cred-title' },
    h('div', { class: 'card-head' }, h('h2', { id: 'cred-title' }, 'API credentials')),
    h('dl', { class: 'cred' },
      h('dt', {}, 'API key'),
      h('dd', {}, h('code', { class: 'secret-box', test: 'api-key' }, me.api_key), copyButton(() => me.api_key, 'Copy API key')),
      h('dt', {}, 'API secret'),
      h('dd', {}, h('code', { class: 'secret-box masked', test: 'api-secret', 'aria-label': 'API secret, hidden' }, 'secret_••••••••••••••••')),
      h('dt', {}, 'Merchant ID'),
      h('dd', {}, h('span', { class: 'mono small' }, me.id))),
    h('p', { class: 'hint' }, 'The key is publishable: the checkout uses it. The secret was shown once, when your account was created or its secret last rotated; paygate keeps only a hash of it, so it cannot be shown again. If it is lost or leaked, your operator gives you a new one with paygate merchant rotate-secret.'));
}

const shortDate = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });

function dayLabel(date) {
  return shortDate.format(new Date(`${date}T00:00:00Z`));
}

// chart draws the daily bars (stacked by outcome) and the success-rate line.
function chart(stats, width) {
  const days = stats.daily;
  const height = 240;
  const pad = { top: 16, right: 44, bottom: 30, left: 36 };
  const w = width - pad.left - pad.right;
  const ch = height - pad.top - pad.bottom;
  const max = niceMax(Math.max(1, ...days.map((d) => d.payments)));
  const band = w / days.length;
  const barW = Math.max(4, Math.min(28, band * 0.6));
  const y = (v) => pad.top + ch - (v / max) * ch;
  const yRate = (r) => pad.top + ch - r * ch;
  const x = (i) => pad.left + band * i + band / 2;
  const currency = stats.collected[0]?.currency || 'INR';
  const total = days.reduce((n, d) => n + d.payments, 0);

  const svg = s('svg', {
    width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', class: 'chart-svg',
    'aria-label': `Payments per day over the last ${days.length} days: ${total} in total.`,
  });
  // Grid and left axis (payments).
  for (let i = 0; i <= 4; i++) {
    const v = (max / 4) * i;
    svg.append(
      s('line', { x1: pad.left, x2: pad.left + w, y1: y(v), y2: y(v), class: 'grid-line' }),
      s('text', { x: pad.left - 8, y: y(v) + 4, class: 'axis-label', 'text-anchor': 'end' }, String(Math.round(v))),
      s('text', { x: pad.left + w + 8, y: yRate(i / 4) + 4, class: 'axis-label' }, `${i * 25}%`));
  }
  const every = Math.ceil(46 / band); // a date label needs about 46px
  days.forEach((d, i) => {
    const pending = d.payments - d.succeeded - d.failed;
    const g = s('g', { class: 'bar' });
    let top = y(0);
    for (const [n, cls] of [[d.succeeded, 'bar-success'], [d.failed, 'bar-failed'], [pending, 'bar-pending']]) {
      if (!n) continue;
      const hgt = (n / max) * ch;
      top -= hgt;
      g.append(s('rect', { x: x(i) - barW / 2, y: top, width: barW, height: Math.max(1, hgt), rx: 2, class: cls }));
    }
    // A full-height hit area carries the day's numbers as a tooltip.
    g.append(s('rect', { x: pad.left + band * i, y: pad.top, width: band, height: ch, class: 'bar-hit' },
      s('title', {}, `${dayLabel(d.date)}: ${d.payments} payments, ${d.succeeded} succeeded, ${d.failed} failed, ${formatAmount(d.amount, currency)} collected`)));
    svg.append(g);
    if ((days.length - 1 - i) % every === 0) {
      svg.append(s('text', { x: x(i), y: height - 10, class: 'axis-label', 'text-anchor': 'middle' }, dayLabel(d.date)));
    }
  });
  // Success rate of the days that have decided payments.
  const points = days.map((d, i) => (d.succeeded + d.failed ? [x(i), yRate(d.succeeded / (d.succeeded + d.failed))] : null)).filter(Boolean);
  if (points.length > 1) {
    svg.append(s('polyline', { points: points.map((p) => p.join(',')).join(' '), class: 'rate-line' }));
  }
  for (const [px, py] of points) svg.append(s('circle', { cx: px, cy: py, r: 3.5, class: 'rate-dot' }));
  if (total === 0) {
    svg.append(s('text', { x: pad.left + w / 2, y: pad.top + ch / 2, class: 'chart-empty', 'text-anchor': 'middle' }, 'No payments in the last 14 days'));
  }
  return svg;
}

// niceMax is the top of the axis: four equal steps of 1, 2 or 5 × 10^n.
function niceMax(v) {
  const raw = v / 4;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((st) => st >= raw);
  return Math.max(1, step) * 4;
}

// chartTable is the chart's data as a table, for screen readers and for
// anyone who wants the numbers.
function chartTable(stats) {
  const currency = stats.collected[0]?.currency || 'INR';
  return h('details', { class: 'chart-data' },
    h('summary', {}, 'Show the numbers'),
    h('div', { class: 'table-wrap' }, h('table', { class: 'table table-compact' },
      thead(['Day', 'Payments', 'Succeeded', 'Failed', 'Collected'], ['Payments', 'Succeeded', 'Failed', 'Collected']),
      h('tbody', {}, stats.daily.map((d) => h('tr', {},
        h('td', {}, dayLabel(d.date)), h('td', { class: 'num' }, d.payments), h('td', { class: 'num' }, d.succeeded),
        h('td', { class: 'num' }, d.failed), h('td', { class: 'num' }, formatAmount(d.amount, currency))))))));
}
