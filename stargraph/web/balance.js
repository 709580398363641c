/** The points balance in the header: always visible, refreshed (coalesced) whenever jobs move. */

import { byTestId } from "./dom.js";
import { formatNumber } from "./i18n.js";
import { BALANCE } from "./queries.js";

export function createBalanceView({ root, api, onChange = () => {} }) {
  const availableEl = byTestId("balance-available", root);
  const frozenEl = byTestId("balance-frozen", root);
  let balance = null;
  let inFlight = null;
  let again = false;
  let timer = null;

  function set(next) {
    const changed = balance && balance.available !== next.available;
    balance = next;
    render();
    if (changed) flash(root);
    onChange(balance);
  }

  function render() {
    if (!balance) return;
    availableEl.textContent = formatNumber(balance.available);
    frozenEl.textContent = formatNumber(balance.frozen);
    availableEl.dataset.value = balance.available;
    frozenEl.dataset.value = balance.frozen;
  }

  /** Fetch now; calls made while a fetch runs collapse into one more fetch after it. */
  async function fetchNow() {
    if (inFlight) {
      again = true;
      return inFlight;
    }
    inFlight = api(BALANCE)
      .then((data) => set(data.balance))
      .catch(() => {}) // the next event refreshes again
      .finally(() => {
        inFlight = null;
        if (again) {
          again = false;
          fetchNow();
        }
      });
    return inFlight;
  }

  return {
    set,
    render,
    /** Refresh soon, once for a burst of events. */
    refresh() {
      clearTimeout(timer);
      timer = setTimeout(fetchNow, 120);
    },
    get available() {
      return balance?.available ?? null;
    },
  };
}

function flash(node) {
  node.classList.remove("is-flashing");
  void node.offsetWidth; // restart the animation
  node.classList.add("is-flashing");
}
