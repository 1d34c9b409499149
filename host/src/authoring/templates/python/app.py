"""__NAME__: a sei-operator task module (task type `__TASK_TYPE__`), in Python.

Waits for the node's StatefulSet, then asks the node's sidecar to mark the node ready
(submitted once with the plan's task id, then polled), and completes with the sidecar's
status. Every step is idempotent: the controller may run one again after a crash.

Built by `sei-operator task build` with componentize-py (`--stub-wasi`: the component imports
nothing but the sei:task interfaces). `componentize-py -d wit -w task-module bindings bindings`
writes the generated types to read.
"""
import json

import wit_world
from wit_world.imports import kube, log, sidecar
from wit_world.imports.types import (
    Capability, PendingStep, Step, Step_Complete, Step_Pending, TaskInfo, TaskInput,
    TaskError_Denied, TaskError_InvalidParams, TaskError_Permanent, TaskError_Transient, TaskError_Unavailable,
)
from componentize_py_types import Err

SUBMITTED = "submitted"


def task_error(e: object) -> Err:
    """The task error for a host error (the `value` of the `Err` a host call raised)."""
    name = type(e).__name__
    message = str(getattr(e, "value", "") or name)
    if name.endswith("_Unavailable"):
        return Err(TaskError_Unavailable(message))
    if name.endswith("_Denied"):
        return Err(TaskError_Denied(message))
    if name.endswith("_Invalid") or name.endswith("_Rejected"):
        return Err(TaskError_Permanent(message))
    return Err(TaskError_Transient(message))


def pending(checkpoint: str, message: str) -> Step:
    return Step_Pending(PendingStep(requeue_after_ms=2000, checkpoint=checkpoint, message=message))


class WitWorld(wit_world.WitWorld):
    def describe(self) -> TaskInfo:
        return TaskInfo(
            name="__NAME__",
            version="0.1.0",
            task_types=["__TASK_TYPE__"],
            capabilities=[Capability.KUBE_READ, Capability.SIDECAR],
            default_timeout_ms=0,
            max_retries=0,
        )

    def execute(self, input: TaskInput) -> Step:
        try:
            name = json.loads(input.node)["metadata"]["name"]
        except (ValueError, KeyError, TypeError) as e:
            raise Err(TaskError_InvalidParams(f"the node has no metadata.name: {e}"))
        try:
            if input.checkpoint != SUBMITTED:
                ref = kube.ObjectRef(api_version="apps/v1", kind="StatefulSet", namespace=None, name=name)
                if kube.get(ref) is None:
                    return pending("waiting", f"waiting for StatefulSet {name}")
                sidecar.submit_task(input.task_id, "mark-ready", None)
            try:
                task = sidecar.get_task(input.task_id)
            except Err as e:
                if type(e.value).__name__.endswith("_NotFound"):
                    return pending(SUBMITTED, f"the sidecar does not know task {input.task_id} yet")
                raise
            if task.status == "failed":
                raise Err(TaskError_Transient(f"sidecar task mark-ready failed: {task.error}"))
            if task.status != "completed":
                return pending(SUBMITTED, f"sidecar task mark-ready is {task.status}")
            status = sidecar.status()
        except Err as e:
            if type(e.value).__name__.startswith("TaskError_"):
                raise
            raise task_error(e.value)
        log.log(log.Level.INFO, f"node {name} marked ready; sidecar says {status}")
        return Step_Complete(json.dumps({"sidecarStatus": status, "statefulSet": name}))
