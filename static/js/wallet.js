/* Pay a booking from the customer's browser wallet (EIP-1193 `window.ethereum`).
 *
 * The server renders everything the wallet needs on #wallet-panel: the contract address,
 * the chain id, the exact amount in wei (hex) and the call data of pay(bookingRef). This
 * script only asks the wallet: eth_requestAccounts, then eth_sendTransaction. No keys
 * ever reach the page. The transaction hash the wallet returns is reported to the server
 * (shown to the customer, never trusted: only the contract's logs pay a booking).
 *
 * One press, one payment: the button is disabled while the wallet is open and hidden
 * once a transaction is sent; an expired price is never sent.
 *
 * Development only: when the browser has no wallet and the page offers one
 * (data-demo-url), a demo wallet backed by the local chain's test account can be used.
 */
(function () {
  "use strict";

  var USER_REJECTED = 4001;
  var CHAIN_NOT_ADDED = 4902;

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (e) {
      return "";
    }
  }

  function say(panel, text, isError) {
    var box = panel.querySelector("#wallet-message");
    box.textContent = text;
    box.classList.toggle("error", Boolean(isError));
  }

  // A minimal EIP-1193 provider that forwards to the portal's development demo wallet.
  function demoWallet(url) {
    return {
      isAcmeDemoWallet: true,
      request: function (args) {
        return fetch(url, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
          body: JSON.stringify({ method: args.method, params: args.params || [] })
        }).then(function (r) {
          if (!r.ok) { throw { code: -32603, message: "The demo wallet answered " + r.status }; }
          return r.json();
        }).then(function (answer) {
          if (answer.error) { throw answer.error; }
          return answer.result;
        });
      }
    };
  }

  function ensureChain(provider, panel) {
    var wanted = panel.dataset.chainId.toLowerCase();
    return provider.request({ method: "eth_chainId" }).then(function (current) {
      if (String(current).toLowerCase() === wanted) { return; }
      return provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId: wanted }] })
        .catch(function (err) {
          var e = new Error("Switch your wallet to " + panel.dataset.chainName + " (chain id " +
                            parseInt(wanted, 16) + "), then press the button again.");
          e.code = err && err.code === CHAIN_NOT_ADDED ? CHAIN_NOT_ADDED : "wrong-chain";
          throw e;
        });
    });
  }

  function report(panel, txHash) {
    var body = new URLSearchParams();
    body.set("quote_id", panel.dataset.quoteId);
    body.set("tx_hash", txHash);
    return fetch(panel.dataset.sentUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), "Content-Type": "application/x-www-form-urlencoded" },
      body: body.toString()
    }).then(function () {
      // Ask the status fragment to fetch itself now rather than at its next poll.
      document.body.dispatchEvent(new CustomEvent("crypto-status-changed", { bubbles: true }));
    }).catch(function () { /* the watcher finds the payment anyway */ });
  }

  function pay(panel, provider) {
    var button = panel.querySelector("#pay-with-wallet");
    if (button.disabled) { return; }  // a payment is already in the wallet
    if (Date.now() >= Number(panel.dataset.expiresMs)) {
      say(panel, "This price has expired. Get a new price before paying.", true);
      button.hidden = true;
      return;
    }
    button.disabled = true;
    say(panel, "Waiting for your wallet. Approve the payment there.", false);
    var from;
    provider.request({ method: "eth_requestAccounts" })
      .then(function (accounts) {
        if (!accounts || !accounts.length) { throw new Error("Your wallet did not share an account."); }
        from = accounts[0];
        return ensureChain(provider, panel);
      })
      .then(function () {
        if (Date.now() >= Number(panel.dataset.expiresMs)) {
          throw Object.assign(new Error("This price has expired. Get a new price before paying."), { code: "expired" });
        }
        return provider.request({
          method: "eth_sendTransaction",
          params: [{ from: from, to: panel.dataset.contract, value: panel.dataset.value, data: panel.dataset.data }]
        });
      })
      .then(function (txHash) {
        button.hidden = true;
        var shortHash = String(txHash).slice(0, 10) + "…" + String(txHash).slice(-6);
        say(panel, "Sent (transaction " + shortHash + "). This page shows when the network has it.", false);
        return report(panel, txHash);
      })
      .catch(function (err) {
        if (err && err.code === USER_REJECTED) {
          say(panel, "You cancelled in your wallet. Nothing was paid.", true);
        } else {
          say(panel, (err && err.message) ? err.message : "Your wallet reported an error. Nothing was paid.", true);
        }
        button.disabled = err && err.code === "expired";
        if (err && err.code === "expired") { button.hidden = true; }
      });
  }

  function start() {
    var panel = document.getElementById("wallet-panel");
    if (!panel) { return; }
    var button = panel.querySelector("#pay-with-wallet");
    var demoButton = panel.querySelector("#use-demo-wallet");

    button.addEventListener("click", function () {
      if (window.ethereum && typeof window.ethereum.request === "function") {
        pay(panel, window.ethereum);
        return;
      }
      if (demoButton && panel.dataset.demoUrl) {
        say(panel, "No browser wallet found. In development you can use the demo wallet.", true);
        demoButton.hidden = false;
        return;
      }
      say(panel, "No browser wallet found. Install a wallet such as MetaMask (or open this page in " +
                 "your wallet's browser), then reload this page; or pay by card instead.", true);
    });

    if (demoButton) {
      demoButton.addEventListener("click", function () {
        demoButton.hidden = true;
        pay(panel, demoWallet(panel.dataset.demoUrl));
      });
    }

    // Once the payment is seen (or the price expired), the button must not be pressed again.
    document.body.addEventListener("htmx:afterSettle", function () {
      var status = document.getElementById("crypto-status");
      if (status && status.dataset.stage !== "waiting") {
        button.hidden = true;
        if (demoButton) { demoButton.hidden = true; }
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
