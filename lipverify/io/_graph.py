"""Residual blocks in a computation graph: find where a tensor branches and where the branches rejoin.

Shared by the ONNX and the PyTorch (``torch.fx``) importers.  The graph is given as nodes with their data
inputs and outputs (tensor names; constants left out) and a set of *merge* nodes (``Add`` of two data
tensors).  A merge ``m`` is a residual block when, with ``t`` the immediate dominator of ``m`` (the last
tensor every path from the graph input to ``m`` passes through):

* the nodes between ``t`` and each input of ``m`` (found walking back from the input, stopping at ``t``)
  form two *disjoint* branches (one of them may be empty: the identity shortcut), and
* nothing inside the block is used outside it (no tensor of a branch feeds another node or is a graph
  output), and at ``t`` every consumer (within the enclosing branch) belongs to the block.

Such a block is then ``y = branch_0(t) + branch_1(t)``, exactly; blocks nest when a branch contains
another block.  Anything else is refused by the importers, naming the node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Block:
    """A residual block: ``merge`` adds ``inputs[0]`` and ``inputs[1]``, computed from ``branch`` by the node
    sets ``nodes[0]`` and ``nodes[1]`` (an empty set when the input *is* ``branch``)."""

    branch: str
    merge: int
    inputs: tuple[str, str]
    nodes: tuple[frozenset[int], frozenset[int]]


class SeriesParallel:
    """Dominators and residual blocks of a DAG of nodes ``nodes[i] = (data inputs, outputs)``.

    ``err(msg, i)`` builds the exception for a problem at node ``i``; ``label(i)`` names node ``i``.
    """

    def __init__(self, nodes: dict[int, tuple[list[str], list[str]]], source: str, merges: Iterable[int],
                 graph_outputs: Iterable[str], err: Callable[[str, int | None], Exception], label: Callable[[int], str]):
        self.nodes = nodes
        self.source = source
        self.err = err
        self.label = label
        self.graph_outputs = set(graph_outputs)
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = {}
        for i, (ins, outs) in nodes.items():
            for t in outs:
                self.producer[t] = i
            for t in dict.fromkeys(ins):
                self.consumers.setdefault(t, []).append(i)
        self.position = self._topological_order()
        # immediate dominators of the tensors reachable from the source, in topological order
        self.order: dict[str, int] = {source: 0}
        self.idom: dict[str, str | None] = {source: None}
        for i in sorted(self.position, key=self.position.get):
            ins = list(dict.fromkeys(nodes[i][0]))
            if not ins or any(t not in self.order for t in ins):
                continue  # not reachable from the source: the importer reports the node as not on the graph
            d = ins[0] if len(ins) == 1 else self._intersect(ins)
            for t in nodes[i][1]:
                self.order[t] = len(self.order)
                self.idom[t] = d if len(ins) > 1 else ins[0]
        self.joins: dict[int, str] = {}  # nodes with two or more data inputs -> where their inputs branch
        for i, (ins, _) in nodes.items():
            ins = list(dict.fromkeys(ins))
            if len(ins) > 1 and all(t in self.order for t in ins):
                self.joins[i] = self._intersect(ins)
        self.merges: dict[int, str] = {}
        for m in merges:
            ins = list(dict.fromkeys(nodes[m][0]))
            if len(ins) == 2 and all(t in self.order for t in ins):
                self.merges[m] = self._intersect(ins)

    def joins_at(self, t: str) -> list[int]:
        """The nodes joining two tensors whose paths branch at ``t`` (merges, and also Mul, Concat, ...)."""
        return sorted((j for j, b in self.joins.items() if b == t), key=self.position.get)

    def _topological_order(self) -> dict[int, int]:
        indegree = {i: 0 for i in self.nodes}
        for i, (ins, _) in self.nodes.items():
            indegree[i] = sum(1 for t in dict.fromkeys(ins) if t in self.producer)
        ready = sorted(i for i, d in indegree.items() if d == 0)
        position: dict[int, int] = {}
        while ready:
            i = ready.pop(0)
            position[i] = len(position)
            for t in self.nodes[i][1]:
                for c in self.consumers.get(t, []):
                    indegree[c] -= 1
                    if indegree[c] == 0:
                        ready.append(c)
        if len(position) != len(self.nodes):
            stuck = min(i for i in self.nodes if i not in position)
            raise self.err("the graph has a cycle through this node", stuck)
        return position

    def _intersect(self, tensors: list[str]) -> str:
        """The nearest common dominator of ``tensors`` (their meeting point in the dominator tree)."""
        a = tensors[0]
        for b in tensors[1:]:
            while a != b:
                if self.order[a] > self.order[b]:
                    a = self.idom[a]  # type: ignore[assignment]
                else:
                    b = self.idom[b]  # type: ignore[assignment]
        return a

    def _back(self, t: str, stop: str) -> frozenset[int]:
        """The nodes on the paths from ``stop`` to ``t`` (``stop`` dominates ``t``)."""
        seen: set[int] = set()
        todo = [t]
        while todo:
            u = todo.pop()
            if u == stop:
                continue
            n = self.producer[u]
            if n not in seen:
                seen.add(n)
                todo.extend(self.nodes[n][0])
        return frozenset(seen)

    def block_at(self, t: str, allowed: set[int] | frozenset[int]) -> Block | None:
        """The outermost residual block branching at ``t`` among the nodes ``allowed`` (None if there is
        none); raises naming the node when the graph around ``t`` is not series-parallel."""
        cands = [m for m, b in self.merges.items() if b == t and m in allowed]
        if not cands:
            return None
        m = max(cands, key=self.position.get)
        ins = tuple(dict.fromkeys(self.nodes[m][0]))
        sets = (self._back(ins[0], t), self._back(ins[1], t))
        shared = sets[0] & sets[1]
        if shared:
            k = min(shared, key=self.position.get)
            raise self.err(f"adds {ins[0]!r} and {ins[1]!r}, which both depend on {self.label(k)} after the branch point "
                           f"{t!r}: the two branches of a residual block must be separate from the tensor where they "
                           "start to the Add where they rejoin (a branch feeds two merges, or a skip connection crosses "
                           "the block)", m)
        region = sets[0] | sets[1]
        for n in sorted(region, key=self.position.get):
            if n not in allowed:
                raise self.err(f"is inside the residual block from {t!r} to {self.label(m)} but also belongs to an "
                               "enclosing branch; the graph is not series-parallel", n)
            for o in self.nodes[n][1]:
                outside = [c for c in self.consumers.get(o, []) if c != m and c not in region]
                if outside or o in self.graph_outputs:
                    where = self.label(outside[0]) if outside else "the graph output"
                    raise self.err(f"its output {o!r} is used inside the residual block from {t!r} to {self.label(m)} "
                                   f"and also by {where}, outside the block (a branch feeding two merges, or a skip "
                                   "connection that crosses the block); only residual blocks whose branches start at one "
                                   "tensor and rejoin at one Add (nested or in sequence) are supported", n)
        outside = [c for c in self.consumers.get(t, []) if c in allowed and c != m and c not in region]
        if outside:
            raise self.err(f"the tensor {t!r} where the residual block ending at this node starts also feeds "
                           f"{self.label(outside[0])}, outside the block; the graph is not series-parallel", m)
        return Block(t, m, (ins[0], ins[1]), sets)
