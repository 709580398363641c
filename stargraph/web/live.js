/**
 * The live event stream: one `myJobEvents` subscription over our WebSocket client. It keeps
 * the cursor of the last event seen, so every (re)subscription resumes right after it and
 * nothing is missed across a network drop; replayed duplicates are skipped.
 */

import { MY_JOB_EVENTS } from "./queries.js";

const SEEN_LIMIT = 2000;
const LOG_LIMIT = 5000;

/**
 * onEvent(event) for each new event; onResync() when the server could not resume from our
 * cursor (e.g. it expired) and the page should reload its state from queries.
 */
export function startLiveEvents({ client, onEvent, onResync }) {
  let lastCursor = null;
  let stopped = false;
  let retryDelay = 500;
  let unsubscribe = () => {};
  const seen = new Set();
  const log = []; // a compact record of what arrived, for diagnostics and the browser tests

  function accept(event) {
    // A re-sent JobQueued (the queue moved) carries the cursor of the last real event, so the
    // cursor alone does not name an event; with the job, type and position it does.
    const key = [event.cursor, event.jobId, event.__typename, event.position ?? ""].join("|");
    if (seen.has(key)) return;
    seen.add(key);
    if (seen.size > SEEN_LIMIT) seen.delete(seen.values().next().value);
    lastCursor = event.cursor;
    retryDelay = 500;
    log.push({
      type: event.__typename,
      jobId: event.jobId,
      status: event.status,
      cursor: event.cursor,
      step: event.step ?? null,
      position: event.position ?? null,
    });
    if (log.length > LOG_LIMIT) log.shift();
    onEvent(event);
  }

  /** The server ended our stream: come back after a pause, resuming from the cursor. */
  function resubscribeLater(reset) {
    if (stopped) return;
    if (reset) {
      lastCursor = null;
      onResync();
    }
    setTimeout(subscribe, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 15000);
  }

  function subscribe() {
    if (stopped) return;
    let failed = false;
    unsubscribe = client.subscribe(
      { query: MY_JOB_EVENTS, variables: () => ({ after: lastCursor }) },
      {
        next(payload) {
          if (payload?.errors?.length) failed = true;
          const event = payload?.data?.myJobEvents;
          if (event) accept(event);
        },
        // a refused or failed stream starts over (the page reloads its state); a plain end resumes
        error: () => resubscribeLater(true),
        complete: () => resubscribeLater(failed),
      },
    );
  }

  subscribe();
  return {
    log,
    get lastCursor() {
      return lastCursor;
    },
    stop() {
      stopped = true;
      unsubscribe();
    },
  };
}
