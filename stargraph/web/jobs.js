/** The jobs panel: the user's current and recent jobs, moved by snapshots and live events. */

import { byTestId, setVisible, showToast } from "./dom.js";
import { describeError, formatNumber, t } from "./i18n.js";
import { createJobCard, renderJobCard } from "./jobcard.js";
import { applyEvent, isTerminal, mergeSnapshot, placeholder } from "./jobstate.js";
import { ACTIVE_JOBS, CANCEL, JOB } from "./queries.js";

const MAX_CARDS = 12;

export function createJobsView({ root, api, onOpenImage, onCancelled = () => {} }) {
  const list = byTestId("jobs-list", root);
  const jobs = new Map();
  const cards = new Map();
  const fetching = new Set();
  let queue = null;
  let ticker = null;

  function render(id) {
    const job = jobs.get(id);
    if (!job) return;
    let card = cards.get(id);
    if (!card) {
      card = createJobCard(job, {
        onCancel: cancel,
        onDismiss: dismiss,
        onOpenImage: (imageId) =>
          onOpenImage(
            job.images.find((i) => i.id === imageId),
            jobs.get(id),
          ),
      });
      cards.set(id, card);
      list.prepend(card.root);
      trim();
    }
    renderJobCard(card, job, queue);
    setVisible(byTestId("jobs-empty", root), cards.size === 0);
  }

  function put(id, job) {
    jobs.set(id, job);
    render(id);
  }

  /** Drop the oldest finished cards beyond the limit. */
  function trim() {
    const finished = [...cards.keys()].filter((id) => isTerminal(jobs.get(id).status));
    while (cards.size > MAX_CARDS && finished.length) dismiss(finished.shift());
  }

  function dismiss(id) {
    cards.get(id)?.root.remove();
    cards.delete(id);
    jobs.delete(id);
    setVisible(byTestId("jobs-empty", root), cards.size === 0);
  }

  /** Fetch a job's full record (settings, cost, charged) and fold it in. */
  async function refetch(id) {
    if (fetching.has(id)) return;
    fetching.add(id);
    try {
      const { job } = await api(JOB, { id });
      if (job && jobs.has(id)) put(id, mergeSnapshot(jobs.get(id), job));
    } catch {
      // the card keeps what the events said
    } finally {
      fetching.delete(id);
    }
  }

  async function cancel(id) {
    put(id, { ...jobs.get(id), cancelling: true });
    try {
      const { cancelJob } = await api(CANCEL, { id });
      upsert(cancelJob);
      onCancelled(cancelJob);
    } catch (error) {
      showToast(describeError(error), "error");
    } finally {
      if (jobs.has(id)) put(id, { ...jobs.get(id), cancelling: false });
    }
  }

  function upsert(snapshot) {
    put(snapshot.id, mergeSnapshot(jobs.get(snapshot.id), snapshot));
  }

  function renderQueueInfo() {
    const box = byTestId("queue-info", root);
    box.textContent = queue
      ? t("queue.summary", {
          length: formatNumber(queue.length),
          running: formatNumber(queue.running),
          backends: formatNumber(queue.healthyBackends),
        })
      : "";
  }

  function renderAll() {
    renderQueueInfo();
    for (const id of cards.keys()) render(id);
  }

  // ETAs count down between events.
  ticker = setInterval(() => {
    for (const [id, job] of jobs) if (!isTerminal(job.status)) render(id);
  }, 1000);

  return {
    upsert,
    renderAll,
    /** One live event; a job not seen before gets a card and its record is fetched. */
    applyEvent(ev) {
      const known = jobs.get(ev.jobId);
      const before = known ?? placeholder(ev.jobId);
      const after = applyEvent(before, ev, Date.now());
      put(ev.jobId, after);
      if (!known || (isTerminal(after.status) && !isTerminal(before.status))) refetch(ev.jobId);
    },
    setQueue(next) {
      queue = next;
      renderAll();
    },
    /** Load the jobs still waiting or running (after sign-in, or after the stream was reset). */
    async loadActive() {
      const data = await api(ACTIVE_JOBS);
      // oldest first, so the newest card ends up on top
      const nodes = data.jobs.edges.map((edge) => edge.node).reverse();
      for (const job of nodes) upsert(job);
    },
    /** An image was deleted elsewhere: take it off the cards. */
    forgetImage(imageId) {
      for (const [id, job] of jobs) {
        if (job.images.some((i) => i.id === imageId)) {
          put(id, { ...job, images: job.images.filter((i) => i.id !== imageId) });
        }
      }
    },
    clear() {
      for (const id of [...cards.keys()]) dismiss(id);
      queue = null;
      renderQueueInfo();
    },
    dispose() {
      clearInterval(ticker);
    },
  };
}
