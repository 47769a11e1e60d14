"""A training step recorded once as a CUDA graph and replayed (core.engine.loop.train_loop uses it on a GPU).

With 100 labeled images a step is a batch of 10 to 20 small images: on an H200 the GPU finishes its few
hundred kernels long before Python has launched them, and the notebook's recipe ran at about 10 ms a
step in eager mode whatever the precision. A replayed graph launches them all at once. What a replay
needs: the batch's indices in a fixed tensor, an optimiser that keeps its step count and learning rate
on the device (Adam's capturable mode, lr as a tensor), and the same batch size every step. After a
few eager steps (cuDNN picks its algorithms, the optimiser creates its state), the next step is
captured and every later one replays it. If capture fails, the steps stay eager: slower, same result.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import torch

from core.config import TrainConfig

WARMUP_STEPS = 3  # eager steps before the capture, on a side stream (PyTorch's documented pattern)
StepLoss = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def graphable(cfg: TrainConfig, device: torch.device, n_items: int) -> bool:
    """Whether train_loop can replay this recipe's steps: a GPU, Adam or AdamW (capturable), and every
    batch the same size (a replay cannot change shapes)."""
    return (
        device.type == "cuda"
        and cfg.optimizer in ("adam", "adamw")
        and n_items % cfg.batch_size == 0
        and cfg.batch_size >= 2
    )


class GraphedSteps:
    """step(idx) runs step_loss on the batch idx, backward and the optimiser step, and returns (loss,
    number right) as device tensors. opt reads its learning rate from the tensor lr, which is set to
    lr_at(step) before each step. capture=False keeps every step eager (what a CPU runs; the tests
    compare it with the engine's own loop)."""

    def __init__(
        self,
        opt: torch.optim.Optimizer,
        lr: torch.Tensor,
        lr_at: Callable[[int], float],
        step_loss: StepLoss,
        batch_size: int,
        device: torch.device,
        capture: bool = True,
    ) -> None:
        self.opt, self.lr, self.lr_at, self.step_loss = opt, lr, lr_at, step_loss
        self.capture = capture and device.type == "cuda"
        self.idx = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: tuple[torch.Tensor, torch.Tensor] | None = None
        self.done = 0

    def step(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.lr.fill_(self.lr_at(self.done))
        self.idx.copy_(idx)
        self.done += 1
        if self.graph is not None:
            self.graph.replay()
            return self.out
        if self.capture and self.done > WARMUP_STEPS:
            try:
                self._record()
                self.graph.replay()
                return self.out
            except RuntimeError as err:  # an op that cannot be captured: carry on eagerly
                warnings.warn(f"CUDA graph capture failed, training eagerly: {err}", RuntimeWarning, stacklevel=2)
                self.graph, self.capture = None, False
        return self._eager()

    def _eager(self) -> tuple[torch.Tensor, torch.Tensor]:
        side = torch.cuda.Stream() if self.capture else None
        if side is not None:
            side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
            self.opt.zero_grad(set_to_none=True)
            loss, right = self.step_loss(self.idx)
            loss.backward()
            self.opt.step()
        if side is not None:
            torch.cuda.current_stream().wait_stream(side)
        return loss.detach(), right

    def _record(self) -> None:
        self.opt.zero_grad(set_to_none=True)  # the graph's backward writes the gradients it allocated
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss, right = self.step_loss(self.idx)
            loss.backward()
            self.opt.step()
        self.graph, self.out = graph, (loss.detach(), right)
