"""The tree's plain shape: the lines a transcript for reviewers reads in."""

from conversations.tree import Tree

# 1 a question; 2 its answer and 4 that answer regenerated; 3 a follow-up to 2; 5 a
# follow-up to 4, answered by 6; 7 that follow-up edited, answered by 8; 9 the first
# question edited, answered by 10.
TREE = Tree.of(
    [(1, None), (2, 1), (3, 2), (4, 1), (5, 4), (6, 5), (7, 4), (8, 7), (9, None), (10, 9)]
)


def test_branches_give_the_shown_path_first_then_each_fork_in_order():
    assert TREE.branches(6) == [[1, 4, 5, 6], [9, 10], [2, 3], [7, 8]]


def test_branches_start_anywhere_in_the_tree_and_hold_every_message_once():
    lines = TREE.branches(10)
    assert lines == [[9, 10], [1, 4, 7, 8], [2, 3], [5, 6]]
    assert sorted(pk for line in lines for pk in line) == list(range(1, 11))


def test_branches_follow_a_fork_of_a_fork_before_the_next_fork():
    tree = Tree.of([(1, None), (2, 1), (3, 1), (4, 3), (5, 3), (6, 1)])
    assert tree.branches(2) == [[1, 2], [3, 5], [4], [6]]


def test_branches_of_an_empty_conversation_are_none():
    assert Tree.of([]).branches(None) == []
