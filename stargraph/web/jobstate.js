/**
 * A job as the page knows it, and how snapshots (query results) and live events move it.
 * Pure functions: statuses only move forward, so a late snapshot or a re-sent event can never
 * take a job back.
 */

const RANK = { QUEUED: 0, DISPATCHED: 1, RUNNING: 2, SUCCEEDED: 3, FAILED: 3, CANCELLED: 3 };
export const isTerminal = (status) => RANK[status] === 3;

/** Fields of a Job snapshot that never go stale. */
const SETTINGS = [
  "prompt",
  "translatedPrompt",
  "negativePrompt",
  "count",
  "width",
  "height",
  "steps",
  "cfg",
  "sampler",
  "scheduler",
  "model",
  "seed",
  "workflow",
  "priority",
  "translation",
  "cost",
  "charged",
  "createdAt",
];

/** A job known only from an event so far; its settings arrive with the next snapshot. */
export function placeholder(id) {
  return {
    id,
    status: "QUEUED",
    position: null,
    progress: null,
    preview: null,
    images: [],
    error: null,
  };
}

/** Fold a Job from the API into what the page knows. */
export function mergeSnapshot(current, snapshot) {
  const job = current ?? placeholder(snapshot.id);
  const next = { ...job };
  for (const key of SETTINGS) if (snapshot[key] !== undefined) next[key] = snapshot[key];
  if (RANK[snapshot.status] < RANK[job.status] || isTerminal(job.status)) return next;
  next.status = snapshot.status;
  next.position = snapshot.status === "QUEUED" ? (job.position ?? snapshot.queuePosition) : null;
  if (snapshot.progress && snapshot.progress.step >= (job.progress?.step ?? 0)) {
    next.progress = snapshot.progress;
  }
  if (snapshot.images?.length) next.images = snapshot.images;
  next.error = snapshot.error ?? job.error;
  return next;
}

const REDUCERS = {
  JobQueued: (job, ev) => ({ position: ev.position }),
  JobProgress: (job, ev, now) => ({
    progress: { step: ev.step, maxSteps: ev.maxSteps, fraction: ev.fraction },
    timing: job.timing ?? { firstAt: now, firstStep: ev.step },
  }),
  JobPreview: (job, ev) => ({ preview: ev.image }),
  JobSucceeded: (job, ev) => ({ images: ev.images }),
  JobFailed: (job, ev) => ({ error: ev.error }),
};

/** Apply one live event (`now` in ms, for the step-rate estimate). */
export function applyEvent(job, ev, now) {
  if (isTerminal(job.status)) return job;
  const next = { ...job, ...REDUCERS[ev.__typename]?.(job, ev, now) };
  if (RANK[ev.status] >= RANK[job.status]) next.status = ev.status;
  if (next.status !== "QUEUED") next.position = null;
  return next;
}

/** Seconds until a waiting job is done, from the queue's ETA; null when unknown. */
export function queuedEta(job, queue) {
  if (job.position === null || job.position === undefined || queue?.etaSeconds == null) return null;
  const length = Math.max(queue.length, job.position, 1);
  return (queue.etaSeconds * job.position) / length;
}

/** Seconds left for a running job, from the pace of its steps so far; null when unknown. */
export function runningEta(job, now) {
  const { progress, timing } = job;
  if (!progress || !timing || progress.step <= timing.firstStep) return null;
  const perStep = (now - timing.firstAt) / 1000 / (progress.step - timing.firstStep);
  return perStep * (progress.maxSteps - progress.step);
}

/** Points given back for a finished job: the hold minus what was charged. */
export function refund(job) {
  if (!isTerminal(job.status) || job.cost == null) return null;
  return job.cost - (job.charged ?? 0);
}
