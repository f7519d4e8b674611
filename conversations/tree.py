"""A conversation as a tree of messages: which path is shown, where each message's
siblings are, and the branch a chosen sibling leads to. Plain values over (id, parent id)
pairs, read in one query (selectors.conversation_tree), so a switch or a page costs the
same few queries at any length.

A message's children are its alternatives' next steps: the answers a question got (the
first, then each regenerated one), or the questions that followed an answer (the first
and each edit). Ids grow with time, so a parent's id is always smaller than its child's,
and the path from the root reads in id order.
"""

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass(slots=True)
class Tree:
    """The shape of one conversation: each message's parent, and each parent's children
    oldest first (None keys the first questions)."""

    parents: dict[int, int | None]
    children: defaultdict[int | None, list[int]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def of(cls, pairs: list[tuple[int, int | None]]) -> "Tree":
        """From (id, parent id) pairs in id order."""
        tree = cls(dict(pairs))
        for pk, parent in pairs:
            tree.children[parent].append(pk)
        return tree

    def __contains__(self, pk: int) -> bool:
        return pk in self.parents

    def newest_leaf(self) -> int | None:
        """The newest message: the end of the branch a conversation shows by default."""
        return max(self.parents, default=None)

    def leaf_under(self, pk: int) -> int:
        """The end of the branch through `pk`: down through each message's newest child
        (where a question, a regenerate or an edit there last went on)."""
        while self.children.get(pk):
            pk = self.children[pk][-1]
        return pk

    def path_to(self, leaf: int) -> list[int]:
        """The ids from the first question down to `leaf`, in order."""
        path = []
        node: int | None = leaf
        while node is not None:
            path.append(node)
            node = self.parents[node]
        return path[::-1]

    def siblings(self, pk: int) -> list[int]:
        """`pk` and the other messages with its parent, oldest first."""
        return self.children[self.parents[pk]]

    def branches(self, leaf: int | None) -> list[list[int]]:
        """Every message once, in lines a reader can follow: the path down to `leaf` first,
        then each message off it starting a line of its own, down through the newest child
        (as leaf_under). A line comes after the one it forks from, in the order of its fork,
        and before the next line forking from that one (depth first)."""
        if leaf is None:
            return []
        lines: list[list[int]] = []
        pending = [self.path_to(leaf)]
        while pending:
            line = pending.pop()
            steps = list(zip(line, [*line[1:], None], strict=True))
            if not lines:  # the other first questions fork from the start
                steps.insert(0, (None, line[0]))
            lines.append(line)
            forks = [
                self._down_from(child)
                for pk, following in steps
                for child in self.children.get(pk, [])
                if child != following
            ]
            pending.extend(reversed(forks))
        return lines

    def _down_from(self, pk: int) -> list[int]:
        line = [pk]
        while self.children.get(pk):
            pk = self.children[pk][-1]
            line.append(pk)
        return line


def shown_leaf(tree: Tree, chosen: int | None) -> int | None:
    """The end of the branch a conversation shows: the one chosen last, when it is still a
    leaf of this tree, else the newest message's."""
    if chosen is not None and chosen in tree and not tree.children.get(chosen):
        return chosen
    return tree.newest_leaf()
