"""The still engine: one Cycles frame's samples over N machines, an AWS Batch array job.

A still does nothing for frames-per-machine: its one frame is cut into sample subsets
(still_plan.py), which the machines claim as they claim frames; each part is rendered with the
same seed and its own sample range and uploaded as a multilayer EXR, and the first machine to
finish a part merges them exactly (weighted by their sample counts, each added as it lands,
so the merge waits on the last few parts only), denoises and composites once, and uploads the
final image as the job's frame (cloud/machine/still_worker.py). So the
add-on follows it as any Batch job: machines, cost, cap and endings are the Batch engine's;
what differs is the spec (parts, their claims and links) and the panel's rows (parts, not
frames).
"""

from __future__ import annotations

from typing import Any

from ..aws import storage
from ..aws.session import AwsSettings
from ..machine import contract
from . import still_plan
from .batch_engine import BatchEngine, MachineFolders, machine_mark_pages
from .batch_siblings import EndSays
from .cloud_steps import PackedScene
from .engine import JobHost, Launched
from .records import EngineName, JobRecord, JobRequest
from .still_plan import after_merge, split_samples


class StillEngine(BatchEngine):
    """N machines rendering parts of one frame's samples."""

    name = EngineName.STILL
    hands_out_frames = False  # one frame, in parts of equal samples

    def check_capacity(self, settings: AwsSettings, record: JobRecord, request: JobRequest) -> None:
        """As for frames on N machines; and the parts are planned here, once, before the spec
        (fewer on spot where the frame's expected time says they would be short)."""
        super().check_capacity(settings, record, request)
        total = request.samples or request.render_samples
        expected = request.frame_seconds.get(record.frames[0])
        record.still_parts = [
            [p.offset, p.length] for p in split_samples(total, record.machines, record.spot, expected)
        ]

    def spec_extras(self, settings: AwsSettings, record: JobRecord, expires: int) -> dict[str, Any]:
        """The parts, a claim link and a download link for each, the listing that tells when all
        are in, and the one claim of the merge. The machine-count fields are the Batch engine's."""
        job = record.job_id
        indexes = [str(i) for i in range(len(record.still_parts))]
        still = contract.StillSpec(
            frame=record.frames[0],
            total_samples=sum(length for _offset, length in record.still_parts),
            parts=[
                contract.StillPart(i, offset, length) for i, (offset, length) in enumerate(record.still_parts)
            ],
            claim_urls=storage.put_links(
                settings, record.bucket, {i: contract.part_claim_key(job, int(i)) for i in indexes}, expires
            ),
            part_urls={
                i: storage.get_link(
                    settings, record.bucket, contract.parts_prefix(job) + contract.part_name(int(i)), expires
                )
                for i in indexes
            },
            parts_list_url=storage.list_link(settings, record.bucket, contract.parts_prefix(job), expires),
            merge_claim_url=storage.put_links(
                settings, record.bucket, {"merge": contract.merge_claim_key(job)}, expires
            )["merge"],
            takeover_after_s=still_plan.TAKEOVER_AFTER_S,
        )
        lists = machine_mark_pages(
            settings, record, [contract.rendered_mark(int(i)) for i in indexes], expires
        )
        # A retried machine finds what its lost attempt claimed through these two listings.
        claim_pages = storage.list_page_links(
            settings, record.bucket, contract.claims_prefix(job), [f"part-{i}" for i in indexes], expires
        )
        return {
            "still": still,
            "claim_list_urls": claim_pages,
            "machine_list_urls": lists,
            "machine_count": record.machines,
        }

    def launch(
        self,
        settings: AwsSettings,
        record: JobRecord,
        request: JobRequest,
        packed: PackedScene,
        boot_script: str,
    ) -> Launched:
        launched = super().launch(settings, record, request, packed, boot_script)
        samples = sum(length for _offset, length in record.still_parts)
        done, _doing = after_merge(record.still_denoise, record.still_composite)
        said = (
            f"{launched.said} Frame {record.frames[0]}: {samples} samples in {len(record.still_parts)} parts, "
            "adaptive sampling off (a fixed total, so the parts merge exactly)"
            + (f", {done} after the merge." if done else "; the scene neither denoises nor composites.")
        )
        return Launched(launched.launch_id, launched.spot, said)

    def outputs(self, job: JobHost) -> StillParts:
        return StillParts(job, self)

    def rendered_words(self, record: JobRecord) -> str:
        samples = sum(length for _offset, length in record.still_parts)
        done, _doing = after_merge(record.still_denoise, record.still_composite)
        return (
            f"Frame {record.frames[0]} rendered on {record.machines} machines: {samples} samples in "
            f"{len(record.still_parts)} parts, merged exactly" + (f", {done}" if done else "")
        )


class StillParts(MachineFolders):
    """The machines' folders as for frames; a machine's row names the part it renders, and its
    end document is judged by parts (`part-<k>`) and the merge, not frames."""

    def work(self) -> frozenset[str]:
        return frozenset(f"part-{i}" for i in range(len(self.job.record.still_parts)))

    def landed(self) -> frozenset[str]:
        """The parts whose EXR is in the bucket, and the merge once the frame arrived."""
        rec = self.job.record
        prefix = contract.parts_prefix(rec.job_id)
        names = {
            obj.key[len(prefix) :]
            for obj in self.job.steps.list_objects(self.job.settings, rec.bucket, prefix)
        }
        parts = {f"part-{i}" for i in range(len(rec.still_parts)) if contract.part_name(i) in names}
        return frozenset(parts | ({"merge"} if rec.frames_done else set()))

    def end_says(self, name: str, data: dict[str, Any]) -> EndSays:
        """done.json's parts rendered here, and the merge where it names the frame done; an
        error or interruption says nothing of parts (its frames_left is the frame)."""
        if name != "done.json":
            return EndSays(frozenset())
        parts = data.get("parts")
        if parts is None:
            parts = []
        count = len(self.job.record.still_parts)
        if not isinstance(parts, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 <= p < count for p in parts
        ):
            raise contract.ContractError(f"done.json parts must be a list of parts 0 to {count - 1}")
        merged = contract.parse_done(data, self.job.record.frames).frames_done
        return EndSays(frozenset({f"part-{p}" for p in parts} | ({"merge"} if merged else set())))

    def _row_text(self, row: dict[str, Any]) -> str:
        pricing = "spot" if self.job.record.spot else "on-demand"
        parts = self.job.record.still_parts
        part = row.get("part")
        if part is not None and row["state"] == "rendering" and 0 <= part < len(parts):
            offset, length = parts[part]
            doing = f", part {part + 1} of {len(parts)} (samples {offset + 1}-{offset + length})"
        elif row["state"] == "merging":
            _done, then = after_merge(self.job.record.still_denoise, self.job.record.still_composite)
            doing = " the parts into one" + (f", then {then}" if then else "")
        else:
            doing = ""
        return f"Machine {row['machine']}: {row['state']}{doing} ({pricing})"
