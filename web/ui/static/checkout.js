/*! paygate checkout SDK. Usage:
 *   <script src="https://YOUR-GATEWAY/checkout.js"></script>
 *   new PaymentGateway({ key, orderId, onSuccess, onFailure, onClose }).open();
 * The gateway's origin is the origin this script was loaded from. Messages
 * are accepted only from that origin, only from this modal's iframe, and
 * only in the three documented shapes; the page in the iframe posts back to
 * this page's origin only, never to "*".
 */
(function () {
  'use strict';

  var script = document.currentScript || document.querySelector('script[src*="checkout.js"]');
  var GATEWAY = new URL(script ? script.src : '/', location.href).origin;
  var SUCCESS_CLOSE_DELAY = 1200; // ms the customer sees the success state

  function isString(v) { return typeof v === 'string' && v.length > 0 && v.length <= 200; }

  // accepted returns the callback data of a message of a documented shape
  // for this order, or null.
  function accepted(msg, orderId) {
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return null;
    if (msg.type === 'close_modal') return {};
    var d = msg.data;
    if (!d || typeof d !== 'object' || !isString(d.paymentId) || d.orderId !== orderId) return null;
    if (msg.type === 'payment_success' && typeof d.amount === 'number') {
      return { paymentId: d.paymentId, orderId: d.orderId, amount: d.amount };
    }
    if (msg.type === 'payment_failed' && typeof d.error === 'string') {
      return { paymentId: d.paymentId, orderId: d.orderId, error: d.error };
    }
    return null;
  }

  function call(fn, arg) {
    if (typeof fn !== 'function') return;
    try { fn(arg); } catch (err) { setTimeout(function () { throw err; }); }
  }

  function css(el, styles) { Object.assign(el.style, styles); return el; }

  function PaymentGateway(options) {
    if (!(this instanceof PaymentGateway)) throw new TypeError('use new PaymentGateway({...})');
    options = options || {};
    if (!isString(options.key)) throw new TypeError('PaymentGateway: "key" (your publishable API key) is required');
    if (!isString(options.orderId)) throw new TypeError('PaymentGateway: "orderId" is required');
    this.options = options;
    this.root = null;
    this._onMessage = this._onMessage.bind(this);
    this._onKey = this._onKey.bind(this);
    this._onFocus = this._onFocus.bind(this);
  }

  PaymentGateway.prototype.open = function () {
    if (this.root) return;
    var o = this.options;
    this.succeeded = false;
    this.returnFocus = document.activeElement;

    var root = document.createElement('div');
    root.id = 'payment-gateway-modal';
    root.setAttribute('data-test-id', 'payment-modal');
    var overlay = css(document.createElement('div'), {
      position: 'fixed', inset: '0', zIndex: '2147483000', background: 'rgba(15, 23, 42, 0.62)',
      display: 'flex', alignItems: 'center', justifyContent: 'center', padding: '0',
    });
    overlay.className = 'modal-overlay';
    var content = css(document.createElement('div'), {
      position: 'relative', width: '100%', maxWidth: '440px', height: '100%', maxHeight: '700px',
      background: '#fff', borderRadius: '14px', overflow: 'hidden', boxShadow: '0 24px 60px rgba(15, 23, 42, 0.35)',
    });
    content.className = 'modal-content';
    content.setAttribute('role', 'dialog');
    content.setAttribute('aria-modal', 'true');
    content.setAttribute('aria-label', 'Secure checkout');

    var src = new URL('/checkout', GATEWAY);
    src.searchParams.set('order_id', o.orderId);
    src.searchParams.set('key', o.key);
    src.searchParams.set('embedded', 'true');
    src.searchParams.set('origin', location.origin);
    var iframe = css(document.createElement('iframe'), { width: '100%', height: '100%', border: '0', display: 'block' });
    iframe.setAttribute('data-test-id', 'payment-iframe');
    iframe.title = 'Secure checkout';
    iframe.src = src.href;

    var close = css(document.createElement('button'), {
      position: 'absolute', top: '10px', right: '10px', width: '36px', height: '36px', borderRadius: '50%',
      border: '0', background: 'rgba(241, 245, 249, 0.95)', color: '#0f172a', font: '22px/1 system-ui, sans-serif',
      cursor: 'pointer', display: 'flex', alignItems: 'center', justifyContent: 'center',
    });
    close.type = 'button';
    close.setAttribute('data-test-id', 'close-modal-button');
    close.setAttribute('aria-label', 'Close checkout');
    close.textContent = '\u00d7';
    var self = this;
    close.addEventListener('click', function () { self._dismiss(); });

    content.appendChild(iframe);
    content.appendChild(close);
    overlay.appendChild(content);
    root.appendChild(overlay);

    // Everything else on the page is inert while the modal is open, so focus
    // and screen readers stay inside it.
    this.inerted = [];
    for (var i = 0; i < document.body.children.length; i++) {
      var el = document.body.children[i];
      if (!el.inert) { el.inert = true; this.inerted.push(el); }
    }
    this.overflow = document.documentElement.style.overflow;
    document.documentElement.style.overflow = 'hidden';
    document.body.appendChild(root);
    this.root = root;
    this.iframe = iframe;
    this.closeButton = close;
    window.addEventListener('message', this._onMessage);
    document.addEventListener('keydown', this._onKey, true);
    document.addEventListener('focusin', this._onFocus, true);
    iframe.addEventListener('load', function () { if (self.root) iframe.focus(); });
    close.focus();
  };

  // close removes the modal without calling onClose (the page decided).
  PaymentGateway.prototype.close = function () {
    if (!this.root) return;
    clearTimeout(this.closeTimer);
    window.removeEventListener('message', this._onMessage);
    document.removeEventListener('keydown', this._onKey, true);
    document.removeEventListener('focusin', this._onFocus, true);
    this.root.remove();
    this.root = this.iframe = this.closeButton = null;
    this.inerted.forEach(function (el) { el.inert = false; });
    document.documentElement.style.overflow = this.overflow;
    var back = this.returnFocus;
    if (back && typeof back.focus === 'function' && document.contains(back)) back.focus();
  };

  // _dismiss is the customer closing the modal: close button, Escape, or
  // the checkout page asking.
  PaymentGateway.prototype._dismiss = function () {
    if (!this.root) return;
    var done = this.succeeded;
    this.close();
    if (!done) call(this.options.onClose);
  };

  PaymentGateway.prototype._onMessage = function (e) {
    if (e.origin !== GATEWAY || !this.iframe || e.source !== this.iframe.contentWindow) return;
    var data = accepted(e.data, this.options.orderId);
    if (!data) return;
    var self = this;
    switch (e.data.type) {
      case 'payment_success':
        if (this.succeeded) return;
        this.succeeded = true;
        call(this.options.onSuccess, data);
        this.closeTimer = setTimeout(function () { self.close(); }, SUCCESS_CLOSE_DELAY);
        break;
      case 'payment_failed':
        call(this.options.onFailure, data);
        break;
      case 'close_modal':
        this._dismiss();
        break;
    }
  };

  PaymentGateway.prototype._onKey = function (e) {
    if (e.key === 'Escape') {
      e.preventDefault();
      this._dismiss();
    }
  };

  // _onFocus brings focus back into the modal if it ever leaves it.
  PaymentGateway.prototype._onFocus = function (e) {
    if (this.root && !this.root.contains(e.target)) this.closeButton.focus();
  };

  window.PaymentGateway = PaymentGateway;
})();
