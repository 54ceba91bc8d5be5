"""The SubmitExperiences call: a request of experiences (each checked field by
field, see ``validation.py``) or one packed batch (checked to its last row),
appended to the buffer, with what was rejected detailed in the status."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from .._proto import experience_pb2 as pb
from ..experience import BufferFullError, ExperienceBuffer, RawBatch
from . import packing
from .status import Abort, aborting
from .validation import row_problems, validate_submission

MAX_SUBMIT_EXPERIENCES = 65536
REJECTIONS_IN_STATUS = 8  # rejections detailed in the status (the count is always complete)
MAX_REASON_CHARS = 200


@dataclass(frozen=True)
class SubmissionOutcome:
    """What became of one request: experiences ``accepted`` and ``rejected``, the
    field each itemized rejected experience first failed on (the first
    ``REJECTIONS_IN_STATUS`` are itemized), or, for a request refused whole, its
    status code (``refused``; ``rejected`` then counts its experiences, at least 1)."""

    accepted: int
    rejected: int = 0
    rejected_fields: tuple[str, ...] = ()
    refused: grpc.StatusCode | None = None


class Submissions:
    """Appends submitted experiences to ``buffer``; requests of at most
    ``max_message_bytes`` (a packed payload inflates to no more). Each callback
    given to ``observe`` is told the outcome of every request."""

    def __init__(self, buffer: ExperienceBuffer, buffer_id: str, max_message_bytes: int) -> None:
        self.buffer = buffer
        self.buffer_id = buffer_id
        self.max_message_bytes = max_message_bytes
        self._observers: list[Callable[[SubmissionOutcome], None]] = []

    def observe(self, callback: Callable[[SubmissionOutcome], None]) -> None:
        """Calls ``callback`` with the ``SubmissionOutcome`` of every later request."""
        self._observers.append(callback)

    def _notify(self, outcome: SubmissionOutcome) -> None:
        for callback in self._observers:
            callback(outcome)

    def submit(self, request: pb.SubmitExperiencesRequest, context) -> pb.SubmitExperiencesResponse:
        with aborting(context):
            return self.submit_or_abort(request, context)

    def submit_or_abort(self, request, context) -> pb.SubmitExperiencesResponse:
        """The response, or Abort for a request refused whole; a request with
        rejected experiences aborts the call with the details in its status."""
        try:
            response = self._respond(request, context)
        except Abort as abort:
            self._notify(
                SubmissionOutcome(
                    accepted=0, rejected=max(1, len(request.experiences)), refused=abort.code
                )
            )
            raise
        self._notify(SubmissionOutcome(accepted=response.accepted_count))
        return response

    def _respond(self, request, context) -> pb.SubmitExperiencesResponse:
        response = pb.SubmitExperiencesResponse(buffer_id=self.buffer_id)
        if request.experiences and request.HasField("packed"):
            raise Abort(
                grpc.StatusCode.INVALID_ARGUMENT, "send either experiences or packed, not both"
            )
        if request.HasField("packed"):
            packed = self._unpack(request.packed)
            response.accepted_count = len(packed)
            response.first_sequence = self._append(packed) if len(packed) else self.buffer.head
            return response
        count = len(request.experiences)
        self._check_rows("experiences", count)
        raw, accepted, rejections = validate_submission(
            request.experiences, self.buffer.height, self.buffer.width
        )
        response.accepted_count = len(accepted)
        response.rejected_count = count - len(accepted)
        response.first_sequence = self._append(raw) if raw is not None else self.buffer.head
        if not rejections:
            return response
        shown = rejections[:REJECTIONS_IN_STATUS]
        for r in shown:
            response.rejections.add(
                index=r.index,
                experience_id=r.experience_id,
                field=r.field,
                reason=r.reason[:MAX_REASON_CHARS],
            )
        bad_request = error_details_pb2.BadRequest()
        for r in shown:
            bad_request.field_violations.add(
                field=f"experiences[{r.index}].{r.field}", description=r.reason[:MAX_REASON_CHARS]
            )
        reasons = "; ".join(
            f"experiences[{r.index}].{r.field}: {r.reason[:MAX_REASON_CHARS]}" for r in shown[:3]
        )
        more = f" (and {len(rejections) - 3} more problems)" if len(rejections) > 3 else ""
        status = status_pb2.Status(
            code=code_pb2.INVALID_ARGUMENT,
            message=(
                f"{response.rejected_count} of {count} experiences rejected, "
                f"{response.accepted_count} accepted: {reasons}{more}"
            ),
        )
        status.details.add().Pack(bad_request)
        status.details.add().Pack(response)
        first_problem: dict[int, str] = {}  # an experience may fail on several fields
        for r in shown:
            first_problem.setdefault(r.index, r.field or "unknown")
        self._notify(
            SubmissionOutcome(
                accepted=response.accepted_count,
                rejected=response.rejected_count,
                rejected_fields=tuple(first_problem.values()),
            )
        )
        context.abort_with_status(rpc_status.to_status(status))
        raise AssertionError("abort_with_status returns only by raising")

    def _check_rows(self, field: str, count: int) -> None:
        limit = min(MAX_SUBMIT_EXPERIENCES, self.buffer.capacity)
        if count > limit:
            raise Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{field}: {count} in one request, at most {limit}",
            )

    def _check_states(self, field: str, states: int) -> None:
        limit = self.buffer.state_capacity // 2
        if states > limit:
            raise Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{field}: {states} distinct boards in one request, at most {limit}: split it",
            )

    def _unpack(self, packed: pb.PackedBatch) -> RawBatch:
        """A packed submission checked to its last row. Its header is checked
        first, so the payload is inflated only when it fits the limits."""
        self._check_rows("packed.count", packed.count)
        self._check_states("packed.state_count", packed.state_count)
        height, width = self.buffer.height, self.buffer.width
        if packed.count and (packed.height, packed.width) != (height, width):
            raise Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"packed: board is {packed.height}x{packed.width}, "
                f"the server's buffer holds {height}x{width} boards",
            )
        try:
            # The tiles are checked as the buffer appends the batch (_append), after
            # the row values are, field by field.
            raw = packing.unpack(packed, max_bytes=self.max_message_bytes, check_tiles=False)
        except packing.PayloadTooLargeError as exc:
            raise Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        except packing.PackedBatchError as exc:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        problems = row_problems(
            raw.player_id, raw.tick, raw.action, raw.reward, raw.legal, height, width
        )
        if problems:
            row, field, reason = problems[0]
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise Abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"packed: {field} of row {row}: {reason}{more}"
            )
        return raw

    def _append(self, raw: RawBatch) -> int:
        self._check_states("experiences", raw.state_kind.shape[0])
        try:
            return self.buffer.append_raw(raw)
        except BufferFullError as exc:
            raise Abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"experience buffer full: {exc}"
            ) from None
        except ValueError as exc:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
