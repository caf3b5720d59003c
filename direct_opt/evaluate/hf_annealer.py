"""HFAnnealer: anneal a Hugging Face causal LM (or any torch model with an HF-style forward).

Every run starts from a private deep copy of the model as it was when the annealer was
built (weights and buffers) and, with ``optimizer_state="restore"``, from a deep copy of the
given AdamW state; the caller's model and state are never modified, and no run sees another
run's updates. The decay is the harness's WSD schedule (``AnnealSchedule``).

* ``engine="torch"`` (default): a plain loop: seeded batches (concatenated seeded
  permutations of the selection), ``model(input_ids, attention_mask, labels).loss`` — the
  model's own token-mean loss — AdamW over the trainable parameters, gradient clipping,
  LR set per step.
* ``engine="trainer"``: ``transformers.Trainer`` with the same optimiser (restored or reset)
  and a ``LambdaLR`` that follows the same WSD decay; Trainer draws the batches (seeded).

Evaluation curves are the token-level mean next-token loss (nats/token) of each eval set
(padding excluded), recorded at step 0, every ``eval_every`` steps and at the end.
Samples are token dicts (``input_ids``, optional ``attention_mask`` / ``labels``), e.g. from
:func:`direct_opt.extract.hf.tokenize_texts` or rows of a tokenised ``datasets.Dataset``.
"""

from __future__ import annotations

import copy
import tempfile
from typing import Any, Callable, Mapping, Sequence

import torch

from ..errors import InvalidInputError, InvalidParameterError, UnknownNameError
from ..extract.data import to_device
from ..extract.hf import collate, hf_causal_lm_loss
from ..lm.train import DEFAULT_BETAS, DEFAULT_WEIGHT_DECAY, AnnealResult, _BatchStream, train_step
from .samples import samples_of, short_hash
from .schedule import AnnealSchedule

ENGINES = ("torch", "trainer")


def with_labels(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``labels`` = ``input_ids`` with padding (mask 0) set to -100, unless the batch has labels."""
    out = dict(batch)
    if "labels" not in out:
        ids, mask = out["input_ids"], out.get("attention_mask")
        out["labels"] = ids if mask is None else ids.masked_fill(mask == 0, -100)
    return out


def own_loss(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The model's own loss on a batch (``model(**batch_with_labels).loss``)."""
    out = model(**with_labels(batch))
    loss = getattr(out, "loss", None)
    if loss is None:
        raise InvalidInputError(f"{type(model).__name__}(input_ids, attention_mask, labels) returned no .loss; "
                                "HFAnnealer needs a model that computes its loss from labels (a causal LM).")
    return loss


class HFAnnealer:
    """:class:`~direct_opt.evaluate.annealer.Annealer` for a ``transformers`` causal LM.

    Args:
        model: the checkpoint model (copied now; later changes to it are not seen).
        optim_state: ``torch.optim.AdamW(trainable_params).state_dict()`` at the checkpoint
            (trainable parameters in ``model.parameters()`` order), for ``optimizer_state="restore"``.
        lr: the stable-phase LR (default peak LR of the decay; else the optimiser state's).
        engine: ``torch`` (plain loop) or ``trainer`` (``transformers.Trainer``).
        collate_fn: batches of samples (default: right padding, exact).
        device: where the runs train (default: the model's device).
        reference: optional reference model for ``excess-loss``.
    """

    def __init__(self, model: torch.nn.Module, optim_state: dict | None = None, *, lr: float | None = None,
                 engine: str = "torch", collate_fn: Callable[[list[Any]], Any] | None = None,
                 device: str | torch.device | None = None, reference: torch.nn.Module | None = None) -> None:
        if not isinstance(model, torch.nn.Module):
            raise InvalidInputError(f"HFAnnealer needs a torch model, got {type(model).__name__}.")
        if engine not in ENGINES:
            raise UnknownNameError(f"engine={engine!r}; known: {', '.join(ENGINES)}.")
        self._model = copy.deepcopy(model).eval()
        self._state = {k: v.detach().clone() for k, v in self._model.state_dict().items()}
        self.optim_state = copy.deepcopy(optim_state)
        group = (optim_state or {}).get("param_groups", [{}])[0]
        self.lr = lr if lr is not None else (float(group["lr"]) if group.get("lr") else None)
        self.betas = tuple(group.get("betas", DEFAULT_BETAS))
        self.weight_decay = float(group.get("weight_decay", DEFAULT_WEIGHT_DECAY))
        self.engine = engine
        self.collate_fn = collate_fn or collate
        self.device = torch.device(device) if device is not None else next(self._model.parameters()).device
        self._reference = reference

    # ------------------------------------------------------------------ protocol
    def check_data(self, data: Any, what: str) -> list[dict[str, torch.Tensor]]:
        if isinstance(data, (str, bytes)) or not hasattr(data, "__len__") or not hasattr(data, "__getitem__"):
            raise InvalidInputError(f"{what} must be a sequence of token dicts (e.g. tokenize_texts(...).samples or a "
                                    f"tokenised datasets.Dataset), got {type(data).__name__}.")
        if len(data) == 0:
            raise InvalidInputError(f"{what} is empty; pass at least one sample.")
        rows = [data[i] for i in range(len(data))]
        bad = next((i for i, s in enumerate(rows) if not isinstance(s, Mapping) or "input_ids" not in s), None)
        if bad is not None:
            raise InvalidInputError(f"{what}[{bad}] is {type(rows[bad]).__name__}, not a dict with 'input_ids'; "
                                    "tokenise the texts first (direct_opt.extract.hf.tokenize_texts).")
        return samples_of(rows)

    def fingerprint(self) -> dict[str, Any]:
        cfg = getattr(self._model, "config", None)
        return {"checkpoint": short_hash({"model": self._state, "optim": self.optim_state}),
                "model_class": type(self._model).__qualname__,
                "model_config": cfg.to_dict() if hasattr(cfg, "to_dict") else None, "engine": self.engine,
                "loss_unit": "nats/token"}

    def model(self) -> torch.nn.Module:
        m = copy.deepcopy(self._model)
        m.load_state_dict(self._state)
        return m.eval()

    def reference(self) -> torch.nn.Module | None:
        return self._reference

    def default_lr(self) -> float | None:
        return self.lr

    def has_optimizer_state(self) -> bool:
        return self.optim_state is not None

    def optimizer_state(self) -> dict | None:
        """The checkpoint's AdamW ``state_dict()`` (LESS's Adam features), or None."""
        return self.optim_state

    # ------------------------------------------------------------------- running
    def _optimizer(self, model: torch.nn.Module, peak_lr: float, restore: bool) -> torch.optim.AdamW:
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=peak_lr, betas=self.betas, weight_decay=self.weight_decay, foreach=False)
        if restore:
            if self.optim_state is None:
                raise InvalidParameterError("optimizer_state='restore' needs optim_state; pass it or use 'reset'.")
            try:
                opt.load_state_dict(copy.deepcopy(self.optim_state))
            except ValueError as exc:
                raise InvalidInputError(f"optim_state does not fit the model's trainable parameters ({exc}); it must "
                                        "be AdamW(trainable parameters in model.parameters() order).state_dict().") from None
        return opt

    @torch.no_grad()
    def eval_loss(self, model: torch.nn.Module, samples: Sequence[Any], batch_size: int) -> float:
        """Token-level mean next-token loss of ``model`` on ``samples`` (padding excluded)."""
        was = model.training
        model.eval()
        total_loss = hf_causal_lm_loss(reduction="sum")
        loss_sum, tokens = 0.0, 0
        for s in range(0, len(samples), batch_size):
            batch = to_device(self.collate_fn(list(samples[s:s + batch_size])), self.device)
            loss_sum += float(total_loss(model, batch).double().sum())
            mask = batch.get("attention_mask", torch.ones_like(batch["input_ids"]))
            tokens += int((mask[:, 1:] * mask[:, :-1]).sum())
        model.train(was)
        return loss_sum / max(tokens, 1)

    def anneal(self, data: Sequence[Any], *, schedule: AnnealSchedule, peak_lr: float, seed: int,
               eval_sets: Mapping[str, Sequence[Any]], eval_batch_size: int) -> AnnealResult:
        data = self.check_data(data, "annealing data")  # a Dataset slice is columnar: index rows
        eval_sets = {name: self.check_data(ev, f"eval set {name!r}") for name, ev in eval_sets.items()}
        model = self.model().to(self.device)  # a fresh copy of the checkpoint for every run
        opt = self._optimizer(model, peak_lr, schedule.optimizer_state == "restore")
        curves: dict[str, list[tuple[int, float]]] = {k: [] for k in eval_sets}

        def record(step: int) -> None:
            for name, ev in eval_sets.items():
                curves[name].append((step, self.eval_loss(model, ev, eval_batch_size)))

        lrs = schedule.lrs(len(data), peak_lr)  # the WSD decay, or the schedule's own LRs (lr_schedule)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            record(0)
            if self.engine == "trainer":
                train_losses = self._run_trainer(model, opt, data, schedule, lrs, peak_lr, seed, record)
            else:
                train_losses = self._run_torch(model, opt, data, schedule, lrs, seed, record)
        model.eval()
        return AnnealResult(curves=curves, final={k: c[-1][1] for k, c in curves.items()}, steps=len(lrs),
                            train_losses=train_losses, lrs=lrs)

    def _run_torch(self, model: torch.nn.Module, opt: torch.optim.Optimizer, data: Sequence[Any],
                   schedule: AnnealSchedule, lrs: list[float], seed: int, record: Callable[[int], None]) -> list[float]:
        stream = _BatchStream(len(data), schedule.batch_size, torch.Generator().manual_seed(seed))
        params = [p for p in model.parameters() if p.requires_grad]
        losses = []
        for t, lr in enumerate(lrs):
            model.train()
            batch = to_device(self.collate_fn([data[int(i)] for i in stream.next()]), self.device)
            losses.append(float(train_step(model, opt, batch, lr, params, schedule.grad_clip, own_loss).detach()))
            if (t + 1) % schedule.eval_every == 0 or t + 1 == len(lrs):
                record(t + 1)
        return losses

    def _run_trainer(self, model: torch.nn.Module, opt: torch.optim.Optimizer, data: Sequence[Any],
                     schedule: AnnealSchedule, lrs: list[float], peak_lr: float, seed: int,
                     record: Callable[[int], None]) -> list[float]:
        from ..extract.hf import require_transformers

        tf = require_transformers()
        for g in opt.param_groups:
            g["lr"] = peak_lr
            g["initial_lr"] = peak_lr
        n_steps = len(lrs)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: lrs[min(t, n_steps - 1)] / peak_lr)
        losses: list[float] = []

        class Curves(tf.TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                if state.global_step % schedule.eval_every == 0 or state.global_step == n_steps:
                    record(state.global_step)

            def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
                if logs and "loss" in logs:
                    losses.append(float(logs["loss"]))

        with tempfile.TemporaryDirectory(prefix="direct_opt_trainer_") as tmp:
            args = tf.TrainingArguments(
                output_dir=tmp, max_steps=n_steps, per_device_train_batch_size=schedule.batch_size,
                learning_rate=peak_lr, max_grad_norm=schedule.grad_clip or 0.0, seed=seed, data_seed=seed,
                report_to=[], save_strategy="no", logging_steps=1, disable_tqdm=True, dataloader_num_workers=0,
                log_level="error",
                use_cpu=self.device.type == "cpu", remove_unused_columns=False)
            trainer = tf.Trainer(model=model, args=args, train_dataset=list(data),
                                 data_collator=lambda rows: with_labels(self.collate_fn(rows)),
                                 optimizers=(opt, sched), callbacks=[Curves()])
            trainer.remove_callback(tf.trainer_callback.PrinterCallback)  # curves are recorded, not printed
            trainer.train()
        return losses
