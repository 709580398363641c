/**
 * StarGraph's reference web client: wires the views to the GraphQL API (HTTP for queries and
 * mutations, our graphql-transport-ws client for live job events).
 */

import { createApi } from "./api.js";
import { createAuthView, tokenStore } from "./auth.js";
import { createBalanceView } from "./balance.js";
import { byTestId, debounce, setVisible, showToast } from "./dom.js";
import { createComposeForm } from "./form.js";
import { createGallery } from "./gallery.js";
import {
  applyTranslations,
  describeError,
  getLanguage,
  onLanguageChange,
  setLanguage,
  t,
} from "./i18n.js";
import { createJobsView } from "./jobs.js";
import { startLiveEvents } from "./live.js";
import { BOOTSTRAP, LOGOUT, QUEUE } from "./queries.js";
import { SubscriptionClient } from "./ws.js";

const endpoint = document.querySelector('meta[name="stargraph-endpoint"]')?.content || "/graphql";
const QUIET_EVENTS = new Set(["JobProgress", "JobPreview"]); // they move no points

let session = null; // { client, live } while signed in

const api = createApi({
  endpoint,
  getToken: tokenStore.get,
  onUnauthenticated: () => session && signOut(t("auth.expired")),
});

const balance = createBalanceView({
  root: byTestId("balance"),
  api,
  onChange: () => compose.updateCost(),
});
const compose = createComposeForm({
  form: byTestId("compose-form"),
  api,
  getAvailable: () => balance.available,
  onSubmitted: (job) => {
    jobs.upsert(job);
    balance.refresh();
    refreshQueue();
  },
});
const gallery = createGallery({
  root: document.querySelector("section.gallery"),
  dialog: byTestId("image-dialog"),
  api,
  onReuse: (job) => {
    compose.applySettings(job);
    showToast(t("detail.reused"));
  },
  onDeleted: (imageId) => jobs.forgetImage(imageId),
});
const jobs = createJobsView({
  root: document.querySelector("section.jobs"),
  api,
  onOpenImage: gallery.openDetail,
  onCancelled: () => balance.refresh(),
});
const auth = createAuthView({ root: byTestId("auth-view"), api, onSignedIn: startSession });

const refreshQueue = debounce(async () => {
  try {
    jobs.setQueue((await api(QUEUE)).queue);
  } catch {
    // the next event tries again
  }
}, 250);

function onEvent(event) {
  jobs.applyEvent(event);
  if (QUIET_EVENTS.has(event.__typename)) return;
  balance.refresh();
  refreshQueue();
  if (event.__typename === "JobSucceeded") gallery.refreshIfFirstPage();
}

function onConnectionState(state, detail) {
  renderConnection(state);
  if (state === "open" && detail.connections > 1) {
    showToast(t("toast.reconnected"));
    balance.refresh();
    refreshQueue();
    // with no event seen yet there is no cursor to resume from: reload the jobs instead
    if (session?.live.lastCursor === null) jobs.loadActive().catch(() => {});
  }
  if (state === "closed" && detail.code === 4403) signOut(t("auth.expired"));
}

function renderConnection(state = session?.client.state ?? "idle") {
  const box = byTestId("connection-status");
  box.dataset.state = state;
  box.querySelector(".conn-label").textContent = t(`conn.${state}`);
}

function wsUrl(path) {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

function showSignedIn(user, signedIn) {
  setVisible(byTestId("app-view"), signedIn);
  setVisible(byTestId("balance"), signedIn);
  setVisible(byTestId("user-menu"), signedIn);
  setVisible(byTestId("connection-status"), signedIn);
  byTestId("user-name").textContent = user?.username ?? "";
}

async function startSession() {
  let data;
  try {
    data = await api(BOOTSTRAP);
  } catch (error) {
    if (error.code !== "UNAUTHENTICATED") {
      showToast(describeError(error), "error"); // e.g. the server restarts: try again shortly
      setTimeout(startSession, 3000);
      return;
    }
    tokenStore.clear();
    auth.show(t("auth.expired"));
    return;
  }
  auth.hide();
  showSignedIn(data.me, true);
  balance.set(data.balance);
  compose.setOptions(data);
  jobs.setQueue(data.queue);
  const client = new SubscriptionClient(wsUrl(endpoint), {
    connectionParams: () => ({ Authorization: `Bearer ${tokenStore.get()}` }),
  });
  client.onStateChange(onConnectionState);
  const live = startLiveEvents({ client, onEvent, onResync: () => jobs.loadActive() });
  session = { client, live };
  renderConnection();
  await Promise.all([jobs.loadActive().catch(() => {}), gallery.load()]);
}

function signOut(message) {
  if (session) {
    session.live.stop();
    session.client.dispose();
    session = null;
  }
  tokenStore.clear();
  jobs.clear();
  gallery.clear();
  showSignedIn(null, false);
  auth.show(message);
}

function setUpLanguage() {
  const select = byTestId("lang-select");
  select.value = getLanguage();
  select.addEventListener("change", () => setLanguage(select.value));
  onLanguageChange((lang) => {
    select.value = lang;
    auth.render();
    compose.render();
    balance.render();
    jobs.renderAll();
    gallery.render();
    renderConnection();
  });
  applyTranslations(document);
}

byTestId("logout-button").addEventListener("click", () => {
  api(LOGOUT).catch(() => {}); // the token is already on its way; forget it here at once
  signOut();
});
window.addEventListener("online", () => session?.client.reconnectNow());

/** Hooks for diagnostics and the browser tests (no effect unless called). */
window.__stargraph = {
  dropSocket: () => session?.client.drop(),
  get events() {
    return session?.live.log ?? [];
  },
  get connections() {
    return session?.client.connections ?? 0;
  },
  get lastCursor() {
    return session?.live.lastCursor ?? null;
  },
};

setUpLanguage();
if (tokenStore.get()) startSession();
else auth.show();
