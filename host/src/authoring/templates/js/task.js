// __NAME__: a sei-operator task module (task type `__TASK_TYPE__`), in JavaScript.
//
// Waits for the node's StatefulSet, then asks the node's sidecar to mark the node ready
// (submitted once with the plan's task id, then polled), and completes with the sidecar's
// status. Every step is idempotent: the controller may run one again after a crash.
//
// Built by `sei-operator task build` with componentize-js, every WASI feature disabled (stdio,
// random, clocks, http, fetch-event): the component imports nothing but the sei:task interfaces.
// Conventions of componentize-js: enums are strings, records camelCase, a host call that returns
// `err` throws a value whose `payload` is the error variant, and a thrown value with a
// `payload` becomes `execute`'s `err`.
import { log } from 'sei:task/log@0.1.1';
import { get } from 'sei:task/kube@0.1.1';
import { status, submitTask, getTask } from 'sei:task/sidecar@0.1.1';

const SUBMITTED = 'submitted';

class TaskError extends Error {
  constructor(tag, message) {
    super(message);
    this.payload = { tag, val: message };
  }
}

// The task error for a host call's error.
function taskError(e) {
  if (e instanceof TaskError) return e;
  const err = e && e.payload;
  if (!err || typeof err.tag !== 'string') return new TaskError('permanent', `unexpected: ${e}`);
  const message = typeof err.val === 'string' ? err.val : err.tag;
  switch (err.tag) {
    case 'unavailable': return new TaskError('unavailable', message);
    case 'denied': return new TaskError('denied', message);
    case 'invalid':
    case 'rejected': return new TaskError('permanent', message);
    default: return new TaskError('transient', message);
  }
}

function pending(checkpoint, message) {
  return { tag: 'pending', val: { requeueAfterMs: 2000, checkpoint, message } };
}

export function describe() {
  return {
    name: '__NAME__',
    version: '0.1.0',
    taskTypes: ['__TASK_TYPE__'],
    capabilities: ['kube-read', 'sidecar'],
    defaultTimeoutMs: 0,
    maxRetries: 0,
  };
}

export function execute(input) {
  let name;
  try {
    name = JSON.parse(input.node).metadata.name;
  } catch (e) {
    throw new TaskError('invalid-params', `the node has no metadata.name: ${e}`);
  }
  try {
    if (input.checkpoint !== SUBMITTED) {
      const sts = get({ apiVersion: 'apps/v1', kind: 'StatefulSet', namespace: undefined, name });
      if (sts === undefined || sts === null) return pending('waiting', `waiting for StatefulSet ${name}`);
      submitTask(input.taskId, 'mark-ready', undefined);
    }
    let task;
    try {
      task = getTask(input.taskId);
    } catch (e) {
      if (e && e.payload && e.payload.tag === 'not-found') {
        return pending(SUBMITTED, `the sidecar does not know task ${input.taskId} yet`);
      }
      throw e;
    }
    if (task.status === 'failed') throw new TaskError('transient', `sidecar task mark-ready failed: ${task.error}`);
    if (task.status !== 'completed') return pending(SUBMITTED, `sidecar task mark-ready is ${task.status}`);
    const s = status();
    log('info', `node ${name} marked ready; sidecar says ${s}`);
    return { tag: 'complete', val: JSON.stringify({ sidecarStatus: s, statefulSet: name }) };
  } catch (e) {
    throw taskError(e);
  }
}
