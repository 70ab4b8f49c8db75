"""The online mean teacher (``IMAGESCORE.REGIME mean_teacher``): one hook on Detectron2's trainer.

Up to ``SWAP_ITER`` the run is the labelled-only control: the burn-in. There the hook starts the
teacher as a copy of the student, and from then on, every iteration:

1. the teacher (eval mode, no gradient, in no optimizer) labels a batch of unlabelled images in the
   weak view as the training stream draws it (:meth:`MeanTeacherHook.label`, attached through
   ``trainer.data_loader``: Detectron2's way to do something with the data is to wrap the loader),
   with the gate's recorder on the same forward (:class:`~imagescore_det.detection.gate.ScoreGate`);
2. the student trains on the labelled batch plus those pseudo labels in the strong view
   (:class:`~imagescore_det.modeling.ImageScoreRCNN`'s pseudo mode: ignore boxes, REG_WEIGHT, LAMBDA_U);
3. after the optimizer step, the teacher moves towards the student (:func:`ema_update`).

Since the labelling runs when the stream draws the batch, metrics.json's ``data_time`` includes it.
An unlabelled image that cannot be read is skipped (the scoring pass's markers,
:class:`~imagescore_det.data.folder.SkipUnreadableMapper`): a warning names it the first time it is
drawn, and the period's log line counts the skips.

Resume: the teacher's weights are a checkpointable of Detectron2's checkpointer (``"teacher"``);
the gate's references and thresholds and the drop counts travel in this hook's state. Detectron2
restarts its loaders from their first batch and leaves the random generators as they happen to be,
so the hook restarts both streams, every generator seeded from ``SEED`` and the iteration, at the
end of the burn-in and at every multiple of ``SOLVER.CHECKPOINT_PERIOD``, where a periodic
checkpoint resumes: a run resumed from one gives the weights of the run never interrupted.
"""

import collections
import copy
import logging
from typing import Dict, Iterable, Iterator, List, Set

import torch

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.engine import HookBase  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.env import seed_all_rng  # noqa: E402

from ..data.folder import warn_unreadable  # noqa: E402
from ..data.pseudo_mapper import WEAK_IMAGE_KEY, WeakStrongViewMapper  # noqa: E402
from ..detection.gate import ScoreGate  # noqa: E402
from ..detection.modes import to_scored_image  # noqa: E402
from ..detection.passes import forward_recorded, readable_records, unwrap_model  # noqa: E402
from ..structures import ScoredImage  # noqa: E402

__all__ = ["MeanTeacherHook", "ema_update", "TEACHER_CHECKPOINTABLE"]

logger = logging.getLogger(__name__)

#: The teacher's key in Detectron2's checkpoints.
TEACHER_CHECKPOINTABLE = "teacher"


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    """Every parameter ``t <- decay * t + (1 - decay) * s`` (as ``t + (1 - decay) * (s - t)``, so a
    parameter the student never changes stays bit for bit); buffers are copied from the student."""
    student_parameters = dict(student.named_parameters())
    for name, parameter in teacher.named_parameters():
        parameter.lerp_(student_parameters[name], 1.0 - decay)
    student_buffers = dict(student.named_buffers())
    for name, buffer in teacher.named_buffers():
        buffer.copy_(student_buffers[name])


class MeanTeacherHook(HookBase):
    """The teacher, its gate and its stream of pseudo-labelled batches (see the module docstring).

    Args:
        cfg: the training config (``IMAGESCORE.*``, ``SEED``, ``SOLVER.CHECKPOINT_PERIOD``).
        model: the student (possibly in DistributedDataParallel); the teacher starts as its copy.

    Attributes:
        teacher: the EMA model, in eval mode, with ``requires_grad`` off.
        gate: the :class:`ScoreGate` (None with ``GATE none``).
        start_iter: the iteration the teacher started at (-1 before).
        counts: what the teacher labelled, the gate dropped and the stream skipped as unreadable
            since the last log line.
        unreadable_files: the unlabelled files skipped as unreadable so far (each named once in the log).
    """

    def __init__(self, cfg, model):
        self.cfg = cfg.clone()
        self.decay = float(cfg.IMAGESCORE.MEAN_TEACHER.EMA_DECAY)
        self.teacher = copy.deepcopy(unwrap_model(model)).eval().requires_grad_(False)
        gated = cfg.IMAGESCORE.MEAN_TEACHER.GATE != "none"
        self.gate = ScoreGate(self.cfg, self.teacher) if gated else None
        self.start_iter = -1
        self.counts: Dict[str, int] = collections.Counter()
        self.unreadable_files: Set[str] = set()

    @property
    def started(self) -> bool:
        return self.start_iter >= 0

    def before_step(self):
        done, swap = self.trainer.iter, self.cfg.IMAGESCORE.SWAP_ITER
        if done < swap:
            return
        period = self.cfg.IMAGESCORE.MEAN_TEACHER.REFERENCE_PERIOD
        if not self.started:
            self.start(done)
        elif period > 0 and (done - swap) % period == 0:
            self.log_counts(done)
            if self.gate is not None:
                self.gate.rebuild(done)
        elif self.gate is not None and self.gate.reference is None:
            self.gate.rebuild(done)  # resumed from a checkpoint without this gate
        if done in (swap, self.trainer.start_iter) or done % self.cfg.SOLVER.CHECKPOINT_PERIOD == 0:
            self.restart_streams(done)

    def after_step(self):
        if self.started:
            ema_update(self.teacher, unwrap_model(self.trainer.model), self.decay)

    def after_train(self):
        if self.started:
            self.log_counts(self.trainer.iter)  # the iterations done

    def start(self, done: int) -> None:
        """The teacher becomes a copy of the student after ``done`` iterations (the burn-in)."""
        if done > self.cfg.IMAGESCORE.SWAP_ITER:
            logger.warning(
                "Starting at iteration %d, past IMAGESCORE.SWAP_ITER=%d with no teacher recorded: "
                "the teacher starts now",
                done,
                self.cfg.IMAGESCORE.SWAP_ITER,
            )
        self.teacher.load_state_dict(unwrap_model(self.trainer.model).state_dict())
        self.start_iter = done
        logger.info(
            "Mean teacher: started after %d iterations as a copy of the student (EMA decay %g, gate %s)",
            done,
            self.decay,
            self.cfg.IMAGESCORE.MEAN_TEACHER.GATE,
        )
        if self.gate is not None:
            self.gate.rebuild(done)

    def restart_streams(self, done: int) -> None:
        """Both training streams from their start, every generator seeded from SEED and ``done``."""
        seed = self.cfg.SEED
        seed_all_rng(None if seed < 0 else (seed + done + (comm.get_rank() << 24)) % 2**32)
        loader = self.trainer.data_loader
        loader.replace_labelled(self.trainer.build_train_loader(self.cfg).labelled)
        loader.attach_pseudo(self.labelled_by_teacher(self.unlabelled_loader()))

    def unlabelled_loader(self) -> Iterable[List[dict]]:
        """Detectron2's train loader over IMAGESCORE.UNLABELLED_DATASETS, PSEUDO_RATIO x IMS_PER_BATCH
        images per batch in :class:`WeakStrongViewMapper`'s two views."""
        cfg = self.cfg.clone()
        cfg.defrost()
        cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS = False  # unlabelled images have none to read
        return self.trainer.build_pseudo_loader(
            cfg, cfg.IMAGESCORE.UNLABELLED_DATASETS, WeakStrongViewMapper
        )

    def labelled_by_teacher(self, unlabelled: Iterable[List[dict]]) -> Iterator[List[dict]]:
        for batch in unlabelled:
            yield self.label(batch)

    def teacher_labels(self, batch: List[dict]) -> List[ScoredImage]:
        """The teacher's detections on the weak views of ``batch`` (:class:`WeakStrongViewMapper`
        dicts) at PSEUDO_SCORE_THRESH, in the weak view's pixels, scored by the gate's mode in the
        same forward where there is a gate."""
        settings = self.cfg.IMAGESCORE
        # Each weak view is its own "original" size, so the detections stay in its pixels.
        inputs = [
            {
                "image": x[WEAK_IMAGE_KEY],
                "height": x[WEAK_IMAGE_KEY].shape[1],
                "width": x[WEAK_IMAGE_KEY].shape[2],
                "image_id": x["image_id"],
                "file_name": x["file_name"],
            }
            for x in batch
        ]
        recorders = [self.gate.scorer.recorder] if self.gate is not None else []
        with torch.inference_mode():
            outputs = forward_recorded(self.teacher, inputs, recorders)
            images = [
                to_scored_image(
                    record,
                    output,
                    pseudo_score_thresh=settings.PSEUDO_SCORE_THRESH,
                    ignore_score_thresh=settings.PSEUDO_TRAINING.IGNORE_SCORE_THRESH,
                )
                for record, output in zip(inputs, outputs)
            ]
            if self.gate is not None:
                self.gate.scorer.score(self.gate.reference, inputs, images)
        return images

    def label(self, batch: List[dict]) -> List[dict]:
        """The student's records of ``batch``: each strong view with the teacher's pseudo labels that
        the gate keeps; images left without a pseudo box are dropped unless IMAGESCORE.KEEP_EMPTY,
        unreadable ones are skipped (:meth:`skip_unreadable`)."""
        batch = readable_records(batch, self.skip_unreadable, "Mean teacher")
        images = self.teacher_labels(batch) if batch else []
        student = []
        for record, image in zip(batch, images):
            kept = self.gate.keep(image) if self.gate is not None else image
            self.counts.update(
                images=1,
                boxes=len(image.boxes),
                gate_dropped_images=int(kept is None),
                gate_dropped_boxes=len(image.boxes) - (len(kept.boxes) if kept is not None else 0),
            )
            if kept is not None and (kept.boxes or self.cfg.IMAGESCORE.KEEP_EMPTY):
                student.append(student_record(record, kept))
        return student

    def skip_unreadable(self, record: dict) -> None:
        """Count the skip of an unreadable image; name its file the first time."""
        self.counts.update(unreadable_images=1)
        if record["file_name"] not in self.unreadable_files:
            self.unreadable_files.add(record["file_name"])
            warn_unreadable(record)

    def log_counts(self, done: int) -> None:
        """One line (and metrics.json scalars) on the period that ends after ``done`` iterations."""
        counts = collections.Counter()
        for part in comm.all_gather(dict(self.counts)):
            counts.update(part)
        self.counts = collections.Counter()
        if not counts or not comm.is_main_process():
            return
        logger.info(
            "Mean teacher, iterations up to %d: labelled %d images with %d pseudo boxes; the %s gate "
            "dropped %d boxes and %d images; %d unreadable images skipped",
            done,
            counts["images"],
            counts["boxes"],
            self.cfg.IMAGESCORE.MEAN_TEACHER.GATE,
            counts["gate_dropped_boxes"],
            counts["gate_dropped_images"],
            counts["unreadable_images"],
        )
        self.trainer.storage.put_scalars(
            smoothing_hint=False, **{"mean_teacher/" + key: value for key, value in counts.items()}
        )

    def state_dict(self):
        return {
            "start_iter": self.start_iter,
            "counts": dict(self.counts),
            "gate": self.gate.state_dict() if self.gate is not None else {},
        }

    def load_state_dict(self, state_dict):
        self.start_iter = int(state_dict["start_iter"])
        self.counts = collections.Counter(state_dict["counts"])
        if self.gate is not None and self.started:
            self.gate.load_state_dict(state_dict["gate"])


def student_record(record: dict, image: ScoredImage) -> dict:
    """``record``'s strong view as a pseudo-labelled training record with ``image``'s pseudo labels."""
    student = {key: value for key, value in record.items() if key != WEAK_IMAGE_KEY}
    student["instances"] = Instances(
        tuple(record["image"].shape[1:]),
        gt_boxes=Boxes(torch.tensor(image.boxes, dtype=torch.float32).reshape(-1, 4)),
        gt_classes=torch.tensor(image.classes, dtype=torch.int64),
    )
    student["ignore_boxes"] = Boxes(
        torch.tensor(image.ignore_boxes, dtype=torch.float32).reshape(-1, 4)
    )
    student["pseudo_labelled"] = True
    return student
