"""Watch a training script from the inside: hooks on the real PyTorch objects it uses.

`Watch.install()` wraps, for the length of one script run, `Optimizer.__init__`/`zero_grad`
(plus the global optimizer step hooks), `Tensor.backward`, `nn.Module.__call__`/`train`/
`zero_grad`/`state_dict`, the functional losses (every loss module calls one of them),
`DataLoader.__iter__`, `torch.save` and the tensor operators a loss is summed with. Each hook
records a few numbers and calls the original; `Watch.restore()` puts every original back.

Nothing reads the script's source: a "training call" is a top-level model call whose output
reaches `backward`, an "evaluation call" one that does not; the training loss is whatever
`backward` is called on. The budget (steps, seconds) is enforced from the same hooks: once it
is spent, training loaders end their epoch early (so the script reaches its own evaluation
code), and the run is stopped with `BudgetReached`, a BaseException the script's own
`except Exception` does not catch.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

# Functional losses: every loss module's forward calls one of these (looked up on F at call
# time), so wrapping them sees nn.CrossEntropyLoss() as well as F.cross_entropy.
LOSS_FUNCTIONS = ("cross_entropy", "nll_loss", "mse_loss", "binary_cross_entropy",
                  "binary_cross_entropy_with_logits", "kl_div", "l1_loss", "smooth_l1_loss",
                  "huber_loss", "multi_margin_loss")
_OWN_DIR = str(__import__("pathlib").Path(__file__).resolve().parents[1])  # mnistlab itself
CAPTURE_IMAGES = 256  # training images kept (inputs as fed, labels as given) for the probes
DETAIL_CALLS = 400  # training calls whose labels and gradients are examined in detail
GRADIENT_STEPS = 100  # steps whose gradients are checked for clearing
EVAL_BATCHES = 25  # an evaluation loader's pass is cut after this many batches
FINGERPRINT_ROWS = 4096  # images fingerprinted per call


class BudgetReached(BaseException):
    """Raised inside the script when its budget is spent; caught by the runner."""


@dataclass
class Call:
    """One top-level call of a model (a module with parameters, not a loss)."""

    index: int
    module_id: int
    training: bool  # module.training at the call
    grad: bool  # grad mode enabled (not under no_grad / inference_mode)
    batch: int
    steps_before: int
    loader: int | None  # id of the loader whose batch was fetched last
    keys: torch.Tensor | None = None  # image fingerprints as fed (rows, 4), see quick_keys
    std_keys: torch.Tensor | None = None  # whatever the scaling (evaluations only)
    backward: bool = False  # its output reached backward


@dataclass
class LossCall:
    index: int  # len(calls) at the time: which model call it follows
    name: str
    options: dict[str, Any]
    target_dtype: str
    target_shape: list[int]
    target_min: float | None
    target_max: float | None
    output_shape: list[int]
    classes_in_batch: int | None  # distinct labels in the batch
    top_class: int | None
    top_fraction: float | None
    requires_grad: bool


@dataclass
class LoaderInfo:
    id: int
    dataset: str
    dataset_len: int | None
    batch_size: int | None
    sampler: str
    passes: int = 0
    train_passes: int = 0
    eval_passes: int = 0
    cut_passes: int = 0
    split: str | None = None  # "train"/"test" when the data set says so (torchvision's .train)


@dataclass
class Event:
    kind: str  # "save" | "state_dict" | "load_state_dict" | "train_mode" | "eval_mode"
    calls: int  # len(calls) when it happened
    steps: int
    detail: str = ""


@dataclass
class Watch:
    max_steps: int = 300
    max_seconds: float = 30.0
    calls: list[Call] = field(default_factory=list)
    losses: list[LossCall] = field(default_factory=list)
    loss_values: list[float] = field(default_factory=list)  # at each backward
    loaders: dict[int, LoaderInfo] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    optimizers: list[torch.optim.Optimizer] = field(default_factory=list)
    snapshots: dict[int, nn.Module] = field(default_factory=dict)  # model id -> copy at 1st call
    modules: dict[int, nn.Module] = field(default_factory=dict)
    captured: list[list[torch.Tensor | None]] = field(default_factory=list)  # [x, y] pairs
    steps: int = 0
    backwards: int = 0
    zero_grads: int = 0
    backward_since_step: int = 0
    stale_at_backward: int = 0  # first backward after a step found last step's gradients
    clean_at_backward: int = 0
    zeroed_before_step: int = 0  # a step found no gradient although backward ran before it
    steps_without_backward: int = 0
    closure_steps: int = 0
    backward_errors: list[str] = field(default_factory=list)
    no_grad_backward: int = 0  # backward on a loss computed under no_grad
    lrs: list[float] = field(default_factory=list)
    group_keys: dict[str, Any] = field(default_factory=dict)
    grads_not_in_optimizer: tuple[int, int] | None = None  # (params, elements)
    optimizer_params_never_grad: tuple[int, int, int] | None = None  # params, elements, total
    accumulation_steps: set[int] = field(default_factory=set)
    accumulation_example: str = ""
    winding: bool = False
    stopped_by: str | None = None
    first_train_time: float | None = None
    wind_calls: int = 0  # len(calls) when winding down began
    cut_passes: int = 0
    _depth: int = 0
    _after_step: bool = False
    _loader: int | None = None
    _originals: list[tuple[Any, str, Any, bool]] = field(default_factory=list)
    _handles: list[Any] = field(default_factory=list)
    _projection: dict[int, torch.Tensor] = field(default_factory=dict)
    _loss_ids: dict[int, torch.Tensor] = field(default_factory=dict)
    _acc: torch.Tensor | None = None
    _acc_steps: set[int] = field(default_factory=set)
    _pending_x: torch.Tensor | None = None
    _pending_n: int = 0
    _train_losses: int = 0
    _named: bool = False
    _tried: set[str] = field(default_factory=set)
    script_dir: str = ""
    names: dict[str, str] = field(default_factory=dict)  # role -> the script's variable name

    def name_of(self, role: str, obj: Any) -> None:
        """Remember the name the script's own code gives `obj` (first time per role)."""
        if role in self.names or not self.script_dir:
            return
        import sys

        frame = sys._getframe(2)
        for _ in range(40):
            if frame is None:
                return
            filename = frame.f_code.co_filename
            if filename.startswith(self.script_dir) and not filename.startswith(_OWN_DIR):
                for key, value in frame.f_locals.items():
                    if value is obj and not key.startswith("_"):
                        self.names[role] = key
                        return
                owner = frame.f_locals.get("self")
                for key, value in (vars(owner).items() if hasattr(owner, "__dict__") else ()):
                    if value is obj:
                        self.names[role] = f"self.{key}"
                        return
            frame = frame.f_back

    # ---- installing and restoring --------------------------------------------------------
    def _patch(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        had = name in vars(owner)
        original = getattr(owner, name)
        self._originals.append((owner, name, vars(owner).get(name), had))
        setattr(owner, name, make(original))

    def install(self) -> None:
        from torch.optim.optimizer import (
            register_optimizer_step_post_hook,
            register_optimizer_step_pre_hook,
        )

        self._handles += [register_optimizer_step_pre_hook(self._step_pre),
                          register_optimizer_step_post_hook(self._step_post)]
        self._patch(torch.optim.Optimizer, "__init__", self._wrap_opt_init)
        self._patch(torch.optim.Optimizer, "zero_grad", self._wrap_zero_grad)
        self._patch(nn.Module, "zero_grad", self._wrap_zero_grad)
        self._patch(torch.Tensor, "backward", self._wrap_backward)
        self._patch(nn.Module, "__call__", self._wrap_call)
        self._patch(nn.Module, "train", self._wrap_train)
        self._patch(nn.Module, "state_dict", self._wrap_event("state_dict"))
        self._patch(nn.Module, "load_state_dict", self._wrap_event("load_state_dict"))
        self._patch(torch, "save", self._wrap_save)
        self._patch(DataLoader, "__iter__", self._wrap_iter)
        for name in LOSS_FUNCTIONS:
            self._patch(F, name, lambda orig, name=name: self._wrap_loss(orig, name))
        for op in ("__add__", "__radd__", "__iadd__", "__mul__", "__rmul__", "__truediv__"):
            self._patch(torch.Tensor, op, lambda orig, op=op: self._wrap_accumulate(
                orig, summing="add" in op))

    def restore(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for owner, name, value, had in reversed(self._originals):
            if had:
                setattr(owner, name, value)
            else:
                delattr(owner, name)
        self._originals.clear()

    # ---- the budget ----------------------------------------------------------------------
    def _tick(self) -> None:
        """Start winding down once the budget is spent; stop when the wind-down has shown
        what it is for (evaluations and the training after them) or runs too long."""
        if self.first_train_time is None:
            return
        spent = time.perf_counter() - self.first_train_time
        # Without an optimizer object (a hand-written update) backward calls are the steps.
        steps = self.steps if self.optimizers else self.backwards
        if not self.winding:
            if steps >= self.max_steps or spent >= self.max_seconds:
                self.winding = True
                self.wind_calls = len(self.calls)
            return
        evals_after = any(not c.grad or not c.backward for c in self.calls[self.wind_calls:-1])
        if (spent >= 1.2 * self.max_seconds + 2 or steps >= 4 * self.max_steps
                or self.cut_passes > 40 or (evals_after and self._trained_after_eval())):
            self.stopped_by = "budget"
            raise BudgetReached

    def _trained_after_eval(self) -> bool:
        """An evaluation pass seen since winding down, and a training call after it."""
        passes, in_eval, trained_after = 0, False, False
        recent = self.calls[self.wind_calls:]
        for i, c in enumerate(recent):
            if not c.grad or (not c.backward and i < len(recent) - 1):
                passes += not in_eval
                in_eval = True
            else:
                in_eval = False
                trained_after = trained_after or passes > 0
        return passes >= 1 and trained_after

    # ---- optimizers ----------------------------------------------------------------------
    def _wrap_opt_init(self, original):
        watch = self

        def __init__(opt, *args, **kwargs):
            original(opt, *args, **kwargs)
            watch.optimizers.append(opt)
        return __init__

    def _sentinels(self) -> list[torch.Tensor]:
        """A few parameters whose gradients tell whether gradients were cleared."""
        params = [p for opt in self.optimizers for g in opt.param_groups for p in g["params"]
                  if isinstance(p, torch.Tensor) and p.requires_grad]
        return params[:1] + params[-1:] if len(params) > 1 else params

    @staticmethod
    def _has_grad(p: torch.Tensor) -> bool:
        return p.grad is not None and bool(p.grad.detach().ne(0).any())

    def _step_pre(self, opt, args, kwargs) -> None:
        if self.first_train_time is None:
            self.first_train_time = time.perf_counter()
        if len(args) > 1 or kwargs.get("closure") is not None:  # args: (optimizer, ...)
            self.closure_steps += 1
            return
        if self.steps < GRADIENT_STEPS:
            if self.backward_since_step == 0:
                self.steps_without_backward += 1
            elif not any(self._has_grad(p) for p in self._sentinels()):
                self.zeroed_before_step += 1
        if not self._named:
            self._named = True
            self.name_of("optimizer", opt)
            model = self.trained_model()
            if model is not None:
                self.name_of("model", model)
        group = opt.param_groups[0]
        if len(self.lrs) < 2 * DETAIL_CALLS:
            self.lrs.append(float(group.get("lr", math.nan)))
        if not self.group_keys:
            self.group_keys = {k: v for k, v in group.items() if k != "params"}

    def _step_post(self, opt, args, kwargs) -> None:
        self.steps += 1
        self.backward_since_step = 0
        self._after_step = True
        self._tick()

    def _check_membership(self) -> None:
        """Parameters of the trained model that get gradients but no optimizer holds, and
        parameters an optimizer holds that never got a gradient."""
        held = {id(p) for opt in self.optimizers for g in opt.param_groups for p in g["params"]}
        model = self.trained_model()
        if model is None:
            return
        params = [p for p in model.parameters() if p.requires_grad]
        missing = [p for p in params if p.grad is not None and id(p) not in held]
        self.grads_not_in_optimizer = (len(missing), sum(p.numel() for p in missing))
        opt_params = [p for opt in self.optimizers for g in opt.param_groups
                      for p in g["params"] if isinstance(p, torch.Tensor) and p.requires_grad]
        never = [p for p in opt_params if p.grad is None]
        self.optimizer_params_never_grad = (len(never), sum(p.numel() for p in never),
                                            sum(p.numel() for p in opt_params))

    def _wrap_zero_grad(self, original):
        watch = self

        def zero_grad(obj, *args, **kwargs):
            if watch._depth == 0:
                watch.zero_grads += 1
            return original(obj, *args, **kwargs)
        return zero_grad

    # ---- backward ------------------------------------------------------------------------
    def _wrap_backward(self, original):
        watch = self

        def backward(tensor, *args, **kwargs):
            watch._before_backward(tensor)
            result = original(tensor, *args, **kwargs)
            if watch.backwards in (1, 3):  # which parameters got gradients
                watch._check_membership()
            return result
        return backward

    def _before_backward(self, loss: torch.Tensor) -> None:
        if self.first_train_time is None:
            self.first_train_time = time.perf_counter()
        if not loss.requires_grad:
            self.no_grad_backward += 1
        if self._after_step and self.steps < GRADIENT_STEPS:
            sentinels = self._sentinels()
            if sentinels:
                if any(self._has_grad(p) for p in sentinels):
                    self.stale_at_backward += 1
                else:
                    self.clean_at_backward += 1
        self._after_step = False
        self.backwards += 1
        if self.backwards == 1:
            self.name_of("loss", loss)
        self.backward_since_step += 1
        if loss.numel() == 1 and len(self.loss_values) < 4 * DETAIL_CALLS:
            self.loss_values.append(float(loss.detach()))
        if self.calls:
            self.calls[-1].backward = True
        if not self.optimizers:
            self._tick()
        if self._acc is not None and loss is self._acc:  # the sum itself is trained on
            self._acc, self._acc_steps = None, set()
        self._loss_ids = {id(loss): loss}

    # ---- model calls ---------------------------------------------------------------------
    def _wrap_call(self, original):
        watch = self

        def __call__(module, *args, **kwargs):
            if watch._depth:
                return original(module, *args, **kwargs)
            if isinstance(module, nn.modules.loss._Loss):
                if "criterion" not in watch._tried:
                    watch._tried.add("criterion")
                    watch.name_of("criterion", module)
                return original(module, *args, **kwargs)
            if not (module._parameters or module._modules):
                return original(module, *args, **kwargs)
            watch._depth = 1
            try:
                watch._record_call(module, args)
                return original(module, *args, **kwargs)
            finally:
                watch._depth = 0
        return __call__

    def _record_call(self, module: nn.Module, args: tuple) -> None:
        mid = id(module)
        grad = torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        call = Call(len(self.calls), mid, module.training, grad,
                    int(x.shape[0]) if x is not None and x.dim() else 0, self.steps,
                    self._loader)
        if mid not in self.modules:
            if not any(True for _ in module.parameters()):
                return
            self.modules[mid] = module
            if len(self.snapshots) < 3 and self.steps == 0:
                try:
                    import copy

                    self.snapshots[mid] = copy.deepcopy(module)
                except Exception:  # a module that cannot be copied: no model-level probes
                    pass
        if grad and self.first_train_time is None:
            self.first_train_time = time.perf_counter()
        if x is not None and x.dim() >= 2 and (x.is_floating_point() or x.dtype == torch.uint8):
            flat = x.detach().reshape(x.shape[0], -1)[:FINGERPRINT_ROWS].float()
            call.keys = quick_keys(flat, self._projection)
            if not grad:  # an evaluation: also the keys that find it in the test split
                call.std_keys = fingerprints(flat, self._projection)
            if grad and sum(
                    len(c[0]) for c in self.captured) < CAPTURE_IMAGES:
                self._pending_x = x.detach()[:CAPTURE_IMAGES].clone()
                self._pending_n = int(x.shape[0])
        self.calls.append(call)
        self._tick()

    def _wrap_train(self, original):
        watch = self

        def train(module, mode: bool = True):
            if watch._depth == 0:
                watch._depth = 1
                try:
                    watch.events.append(Event("train_mode" if mode else "eval_mode",
                                              len(watch.calls), watch.steps))
                    return original(module, mode)
                finally:
                    watch._depth = 0
            return original(module, mode)
        return train

    def _wrap_event(self, kind: str):
        watch = self

        def make(original):
            def method(module, *args, **kwargs):
                if watch._depth == 0 and id(module) in watch.modules:
                    watch.events.append(Event(kind, len(watch.calls), watch.steps))
                    watch._depth = 1
                    try:
                        return original(module, *args, **kwargs)
                    finally:
                        watch._depth = 0
                return original(module, *args, **kwargs)
            return method
        return make

    def _wrap_save(self, original):
        watch = self

        def save(obj, f, *args, **kwargs):
            watch.events.append(Event("save", len(watch.calls), watch.steps,
                                      str(f) if isinstance(f, str | bytes) or hasattr(
                                          f, "__fspath__") else type(f).__name__))
            return original(obj, f, *args, **kwargs)
        return save

    # ---- losses --------------------------------------------------------------------------
    def _wrap_loss(self, original, name: str):
        watch = self

        def loss_fn(input, target, *args, **kwargs):
            if watch._depth == 0 and isinstance(input, torch.Tensor) and isinstance(
                    target, torch.Tensor):
                watch._record_loss(name, input, target, kwargs)
            out = original(input, target, *args, **kwargs)
            if isinstance(out, torch.Tensor) and out.requires_grad:
                watch._loss_ids = {id(out): out}
            return out
        return loss_fn

    def _record_loss(self, name: str, output: torch.Tensor, target: torch.Tensor,
                     kwargs: dict[str, Any]) -> None:
        training = output.requires_grad
        n_train = self._train_losses
        self._train_losses += training
        if n_train >= DETAIL_CALLS and training:
            return
        t = target.detach()
        labels = None
        if not t.is_floating_point() and t.dim() == 1:
            labels = t
        elif t.dim() == 2 and output.dim() == 2 and t.shape == output.shape:
            labels = t.argmax(1)
        classes = top = frac = None
        if labels is not None and labels.numel():
            counts = torch.bincount(labels.clamp(min=0).long())
            classes = int((counts > 0).sum())
            top = int(counts.argmax())
            frac = float(counts.max()) / labels.numel()
        small = n_train < 50 or not training  # the label range: the first batches tell
        opts = {k: (v if isinstance(v, int | float | str | bool) or v is None else
                    type(v).__name__) for k, v in kwargs.items()}
        self.losses.append(LossCall(
            len(self.calls), name, opts, str(t.dtype).replace("torch.", ""), list(t.shape),
            float(t.min()) if t.numel() and small else None,
            float(t.max()) if t.numel() and small else None,
            list(output.shape), classes, top, frac, training))
        if training and self._pending_x is not None:
            if t.dim() and self._pending_n == len(t):
                self.captured.append([self._pending_x, t[:len(self._pending_x)].clone()])
            self._pending_x = None

    # ---- a loss summed across steps ------------------------------------------------------
    def _wrap_accumulate(self, original, summing: bool):
        watch = self

        def op(a, b):
            out = original(a, b)
            if watch._loss_ids and isinstance(out, torch.Tensor) and out.requires_grad:
                watch._check_accumulation(a, b, out, summing)
            return out
        return op

    def _check_accumulation(self, a: Any, b: Any, out: torch.Tensor, summing: bool) -> None:
        """`total += loss` across steps: a chain of sums, each adding a loss to the last sum,
        that lasts over several optimizer steps. `loss * n` or `loss / k` is still a loss;
        `loss1 + loss2` within a step is one loss."""
        ids = self._loss_ids
        if out.numel() != 1:
            return
        loss_side = [o for o in (a, b) if isinstance(o, torch.Tensor) and ids.get(id(o)) is o]
        if not loss_side:
            return
        other = b if loss_side[0] is a else a
        if not summing:
            if isinstance(other, int | float):
                ids[id(out)] = out
            return
        if other is self._acc and other is not None:
            self._acc_steps.add(self.steps)
        elif isinstance(other, int | float):
            self._acc_steps = {self.steps}  # `0 + loss`: a new running total
        else:
            ids[id(out)] = out  # two losses added within a step
            return
        self._acc = out
        if len(self._acc_steps) >= 3:
            self.accumulation_steps |= self._acc_steps

    # ---- data loaders --------------------------------------------------------------------
    def _wrap_iter(self, original):
        watch = self

        def __iter__(loader):
            return _WatchedIterator(watch, loader, original(loader))
        return __iter__

    def loader_info(self, loader: DataLoader) -> LoaderInfo:
        info = self.loaders.get(id(loader))
        if info is None:
            ds = loader.dataset
            try:
                n = len(ds)  # type: ignore[arg-type]
            except TypeError:
                n = None
            split = getattr(ds, "train", None)
            info = LoaderInfo(id(loader), type(ds).__name__, n, loader.batch_size,
                              type(loader.sampler).__name__ if loader.batch_sampler is None
                              or loader.sampler is not None else "custom",
                              split=None if split is None else ("train" if split else "test"))
            self.loaders[id(loader)] = info
        return info

    # ---- for the analysis ----------------------------------------------------------------
    def trained_model(self) -> nn.Module | None:
        """The module most training calls went to."""
        counts: dict[int, int] = {}
        for c in self.calls:
            if c.grad:
                counts[c.module_id] = counts.get(c.module_id, 0) + 1 + 100 * c.backward
        if not counts:
            return None
        return self.modules.get(max(counts, key=counts.__getitem__))


class _WatchedIterator:
    """A DataLoader's iterator that notes which loader the batches come from and cuts a
    pass short: a training pass once the budget is spent, an evaluation pass (no optimizer
    step during it) after EVAL_BATCHES batches."""

    def __init__(self, watch: Watch, loader: DataLoader, it: Iterator) -> None:
        self._watch, self._loader, self._it = watch, loader, it
        self._info = watch.loader_info(loader)
        if self._info.passes == 0:
            watch.name_of(f"loader:{id(loader)}", loader)
        self._info.passes += 1
        self._start_steps = watch.steps
        self._batches = 0
        self._counted = False
        if watch.winding:
            watch._tick()

    def __iter__(self) -> _WatchedIterator:
        return self

    def __len__(self) -> int:
        return len(self._it)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._it, name)

    def __next__(self) -> Any:
        w, info = self._watch, self._info
        trained = w.steps > self._start_steps or w.backward_since_step > 0
        if not self._counted and self._batches >= 2:
            self._counted = True
            if trained:
                info.train_passes += 1
            else:
                info.eval_passes += 1
        cut = ((trained and w.winding) or (not trained and self._batches >= EVAL_BATCHES
                                           and w.first_train_time is not None))
        if cut:
            info.cut_passes += 1
            w.cut_passes += 1
            raise StopIteration
        batch = next(self._it)
        self._batches += 1
        w._loader = id(self._loader)
        return batch


def quick_keys(flat: torch.Tensor, cache: dict[int, torch.Tensor]) -> torch.Tensor:
    """(N, D) images as fed -> (N, 4) int16 keys: 4 random projections kept to float16
    precision (one matmul: cheap enough for every training batch). The same image through the
    same preprocessing gets the same key in a training and an evaluation batch."""
    d = flat.shape[1]
    if d not in cache:
        fingerprints(flat[:1], cache)
    return (flat @ cache[d][:, :4]).to(torch.float16).view(torch.int16).cpu()


def fingerprints(flat: torch.Tensor, cache: dict[int, torch.Tensor] | None = None
                 ) -> torch.Tensor:
    """(N, D) images -> (N, 4) int64 keys that identify each image whatever affine scaling
    was applied to the whole data set (x / 255, (x - mean) / std): each image is standardised
    on its own, then projected on 4 fixed random directions and coarsely rounded."""
    d = flat.shape[1]
    cache = {} if cache is None else cache
    if d not in cache:
        g = torch.Generator().manual_seed(1234)
        p = torch.randn(d, 4, generator=g)
        # columns: 4 projections, then the row sum (for the mean)
        cache[d] = torch.cat([p, torch.ones(d, 1)], 1).to(flat.device)
    proj = flat @ cache[d]
    mean = proj[:, 4:] / d
    centred = proj[:, :4] - mean * cache[d][:, :4].sum(0)  # (x - mean) . p
    # |x - mean| = sqrt(|x|^2 - d mean^2): the projection of the image scaled to norm sqrt(d)
    norm = ((flat * flat).sum(1, keepdim=True) - d * mean * mean).clamp(min=1e-12).sqrt()
    return torch.round(centred / norm * (4 * d ** 0.5)).long().cpu()


def optimizer_factory(opt: torch.optim.Optimizer, group: dict[str, Any]):
    """(params, lr) -> a fresh optimizer of `opt`'s class with its first group's settings."""
    cls = type(opt)
    try:
        accepted = set(inspect.signature(cls.__init__).parameters)
    except (TypeError, ValueError):
        accepted = set()
    settings = {k: v for k, v in group.items() if k in accepted and k not in ("params", "lr")
                and k not in ("foreach", "fused", "differentiable", "capturable")}

    def build(params, lr: float) -> torch.optim.Optimizer:
        return cls(params, lr=lr, **settings)

    build.__name__ = cls.__name__
    return build, settings
