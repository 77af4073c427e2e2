"""Errors of the jobs domain.

Two kinds: those a task raises to steer its own retries (``PermanentJobError``, ``WorkerLost``), and
the typed panel errors a page or the API shows when someone asks for a job (``JobNotFound`` …).
"""

from __future__ import annotations

from corral.kit.errors import Conflict, NotFound


class PermanentJobError(Exception):
    """Raised by a task when trying again cannot help (bad input, a refusal from the hypervisor).

    The attempt fails and the job is not retried, whatever its retry policy says.
    """


class WorkerLost(Exception):
    """The worker running an attempt stopped sending heartbeats (killed, crashed, host lost)."""


class UnknownTask(LookupError):
    """A job was deferred under a name no task module registers: a programming error."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no task is registered as {name!r}; is its module listed in TASK_MODULES?")
        self.name = name


class InvalidJobArguments(TypeError):
    """The keyword arguments of a deferred job do not match the task's signature."""


class TaskDefinitionError(Exception):
    """A task or periodic schedule is declared wrongly (bad name, lock template, duplicate)."""


class JobNotFound(NotFound):
    code = "job_not_found"
    default_message = "That job does not exist (finished jobs are removed after 30 days)."


class JobNotRetryable(Conflict):
    code = "job_not_retryable"
    default_message = "Only a failed job can be retried."


class JobAlreadyQueued(Conflict):
    code = "job_already_queued"
    default_message = "The same operation is already waiting to run."
