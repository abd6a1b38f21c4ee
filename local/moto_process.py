"""moto's server in a process of its own: ``python -m local.moto_process --fd N``.

``local.aws.EmbeddedAws`` binds the listening socket and starts this process on it, so the
endpoint is known before moto has loaded, and moto's request handling (a few milliseconds of
CPU per call) never shares an interpreter lock with the gateway or the handlers. The process
prints ``READY`` once it serves, and stops when its stdin closes: when ``EmbeddedAws.stop()``
closes it, or when the process that started it dies.

It serves with waitress, not moto's werkzeug development server: werkzeug's answers all say
``Connection: close``, so every call cost a TCP connection, a thread, and a 10 ms wait for the
client to close it; waitress keeps connections alive, and botocore's pools reuse them. Its
threads also let an SQS long poll wait without holding up anything else.

DynamoDB calls (``X-Amz-Target: DynamoDB_20120810.*``, signed for ``dynamodb``, as botocore
sends them) go from waitress straight to moto's ``DynamoHandler`` (``_lean_front``): moto's own
handler, parser, backend and serializer, the same ``Response`` and CORS header, so the same
bytes, without Flask's request context, moto's domain dispatcher and werkzeug's lazy request
parsing on the way (about a quarter of a touch's CPU), and one at a time, so that under load
each call finishes in turn instead of all of waitress's threads sharing the interpreter lock
and every call taking as long as all of them. Every other request (an SQS long poll waits in
its own thread, never for a DynamoDB call), and a DynamoDB one of any other shape, goes to
moto's WSGI app as before. waitress's loop thread serves a DynamoDB call itself
(``_answer_dynamodb_in_the_loop``) instead of handing it to one of its threads and being woken
when it is done.

moto runs patched like AWS (``local.fidelity.patch_moto``) and with these costs removed, none
of which changes what it answers (but its dashboard's list of dead instances):

- it keeps every model instance it ever made (for its dashboard), two copies of the item
  per ``UpdateItem`` among them: the process grew with every call, and so did each full
  garbage collection's pause; here only those alive are listed, and kept;
- its HTTP dispatcher lists moto's package directory (a ``listdir`` and a ``stat`` per
  service) under a process-wide lock on every request: here the list is read once;
- its SQS model reads the clock through ``unix_time()``, which builds two datetimes per call,
  several times per queued message: here it is ``time.time()``;
- its DynamoDB model tokenizes and parses an ``UpdateExpression`` twice per ``UpdateItem``
  (once to check the names used, once to run it) and lexes a ``ConditionExpression`` twice,
  every request anew, though a client sends the same few expression strings over and over (a
  ping is one conditional ``UpdateItem``): here each expression string is parsed once, and
  the clause count that depends on its text alone (one SET, one REMOVE...) checked once;
- its update validator walks the AST ten times, and at every node of every walk rebuilds the
  tuple of node types the walk handles: here what a walk asks of a node's type is answered
  once per type (and so when ``find_clauses`` descends), a walk skips the subtrees holding no
  node it processes (a touch's REMOVE clause, 60 of its 75 nodes, for six of the seven
  walks), and the two walks that read nothing but the expression and its names are skipped
  when the same expression and names passed them before;
- its validator's copy of the update AST links each node to its parent, so every request
  left a cycle of some 75 nodes for the garbage collector (a collection every two touches):
  here the links are dropped once the validator is done, and the copy is freed at once;
- that copy is a copy of the whole AST, though no request changes a REMOVE clause of plain
  paths (a touch's, 60 of its 75 nodes): here the copies hold the cached clause itself;
- it projects an item (twice per item of a ``Query`` on ``userId-index``) through plain
  Python and back, every attribute, and re-checks the size at each: here the names asked for
  are picked directly when the values are strings and numbers;
- its answer serializer searches the model's ten members of every ``AttributeValue`` for the
  one present: here a string or a number is written directly;
- it parses a request's ``ConditionExpression`` twice, with the same inputs, and every
  request anew, though only the values in its leaves change: here once per text and names
  used, each request's values filled into a copy of the kept tree;
- it serializes every answer by walking the operation's output model, though a touch's
  result (its table's name and capacity) is the same every time: here a small result's
  answer is kept;
- a ``TransactWriteItems`` deep-copies each table it writes once per item, to undo it: here
  the copy holds the table's item containers, and a deep copy of each item it updates;
- it lists its handler class's methods (``inspect.getmembers``) on every request to find the
  action's: here each class's list is read once.

``tests/local/test_moto_fast_path.py`` holds each of these to moto's answers: the runtime's own
calls and the errors around them go to plain moto (``--plain``) and to this one, and must
get the same bytes back. ``python -m benchmarks.moto_cpu`` measures the CPU per call of both.
"""

from __future__ import annotations

import argparse
import gc
import io
import logging
import pickle
import socket
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from copy import deepcopy
from datetime import datetime
from functools import lru_cache
from typing import Any

from local.fidelity import patch_moto

READY_LINE = "READY"
# Serve moto patched like AWS but as it is otherwise: the reference the fast path is held to.
PLAIN_FLAG = "--plain"
# Requests moto answers at once: its work holds the GIL, so more threads add nothing but a long
# poll (``WaitTimeSeconds``) holds one for its whole wait.
MOTO_THREADS = 16
# Keep-alive connections open at once: the handlers' pools (64 per process, runtime/aws.py) and
# the gateway's own clients, with room for several handler worker processes.
MOTO_CONNECTION_LIMIT = 1024
# Distinct expression strings whose parse is kept: a stack sends a few dozen; the bound keeps
# a client that builds expressions with values inlined from growing the cache without end.
EXPRESSION_CACHE_SIZE = 1024


def _parse_each_expression_once() -> None:
    """Parse an expression string once, so each request pays only for what depends on values.

    Both caches hold what moto derives from the expression text alone and never changes
    afterwards: the update AST is only read (``find_clauses``) or deep-copied before moto's
    validator rewrites it, and the condition's lexed tokens are immutable tuples that the
    parser rebuilds from (names and values are looked up later, per request). An expression
    that fails to parse raises every time, as before: errors are not cached.
    """
    from moto.dynamodb.comparisons import ConditionExpressionParser

    # The module is ``# type: ignore`` as a whole, so mypy sees none of its names.
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    make = lru_cache(maxsize=EXPRESSION_CACHE_SIZE)(UpdateExpressionParser.make)
    setattr(UpdateExpressionParser, "make", staticmethod(make))  # noqa: B010

    lex = ConditionExpressionParser._lex_condition_expression

    @lru_cache(maxsize=EXPRESSION_CACHE_SIZE)
    def tokens(expression: str) -> tuple[Any, ...]:
        return tuple(lex(ConditionExpressionParser(expression, {}, {})))

    def lex_condition_expression(self: Any) -> deque[Any]:
        return deque(tokens(self.condition_expression))

    setattr(ConditionExpressionParser, "_lex_condition_expression", lex_condition_expression)  # noqa: B010
    _count_actions_once(UpdateExpressionParser)


# Set on a cached update AST whose clause counts are valid; its copies carry it along.
_ACTIONS_COUNTED = "_local_actions_counted"
# Set on a cached update AST: its pickle, taken before this attribute was set.
_PICKLED = "_local_pickled"
# Set on a copy of a cached update AST: that AST, whose checks passed are kept on it.
_ORIGIN = "_local_origin"
# Set on a cached update AST: the name-dependent checks it passed, keyed by what they read.
_PASSED = "_local_passed"
# Name-dependent checks kept per expression: a touch's names change once a rate window.
PASSED_CHECKS_PER_EXPRESSION = 256


def _count_actions_once(parser: Any) -> None:
    """Check an update expression's clause counts once per expression string, and copy its AST
    from a pickle.

    moto's ``ActionCountValidator`` walks every request's AST copy, calling ``find_clauses``
    three times per nested node (about a tenth of an ``UpdateItem``), to refuse a second SET,
    REMOVE or ADD: a property of the text. The cached AST is checked once when parsed (the
    walk only reads it) and marked when valid; the validator skips marked copies, and still
    walks, and refuses, any other, at the same point of the request as before.

    moto's validator then rewrites a ``deepcopy`` of the AST, which walks its parent links
    through a memo in Python; unpickling the same tree is C and about 6x faster (0.06 ms
    against 0.38 for a ping's), and yields the same objects. Anything else it copies (an
    ``if_not_exists`` operand) still goes through ``deepcopy``.

    A REMOVE clause of plain paths (a touch's, 60 of its 75 nodes) is not copied: the copy
    holds the cached clause itself (``_removes_to_share``), and the time to copy it is saved.
    """
    from moto.dynamodb.exceptions import TooManyClauses
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.validators import ActionCountValidator

    make = parser.make
    walk = ActionCountValidator.traverse

    def make_and_count(expression: str) -> Any:
        ast = make(expression)
        if not getattr(ast, _ACTIONS_COUNTED, False):
            try:
                walk(ActionCountValidator(), ast)
            except TooManyClauses:
                return ast
            setattr(ast, _ACTIONS_COUNTED, True)
            shared = _removes_to_share(ast)
            for clause in shared:
                setattr(clause, _SHARED, True)
            kept = io.BytesIO()
            pickler = pickle.Pickler(kept, pickle.HIGHEST_PROTOCOL)
            ids = {id(clause): n for n, clause in enumerate(shared)}
            pickler.persistent_id = lambda node: ids.get(id(node))  # type: ignore[method-assign]
            pickler.dump(ast)
            setattr(ast, _PICKLED, (kept.getvalue(), tuple(shared)))
        return ast

    def traverse(self: Any, node: Any) -> Any:
        return node if getattr(node, _ACTIONS_COUNTED, False) else walk(self, node)

    setattr(parser, "make", staticmethod(make_and_count))  # noqa: B010
    setattr(ActionCountValidator, "traverse", traverse)  # noqa: B010

    def copy_node(node: Any, memo: dict[int, Any] | None = None) -> Any:
        pickled = getattr(node, _PICKLED, None)
        if pickled is None:
            return deepcopy(node, memo)
        data, shared = pickled
        unpickler = pickle.Unpickler(io.BytesIO(data))  # noqa: S301 - our own pickle of moto's AST
        unpickler.persistent_load = shared.__getitem__  # type: ignore[method-assign]
        copy = unpickler.load()
        setattr(copy, _ORIGIN, node)
        return copy

    # The name validators.py imported from ``copy``, rebound where it looks it up.
    setattr(validators, "deepcopy", copy_node)  # noqa: B010


# Set on a REMOVE clause of a cached update AST that its copies share rather than copy.
_SHARED = "_local_shared"


def _removes_to_share(ast: Any) -> list[Any]:
    """The REMOVE clauses of an update AST that no request's validation or execution changes,
    so that each copy of the AST can hold them rather than copies of them.

    Of the validator's walks, four put a new node in place of one (checked against moto's
    validators): ``ExpressionAttributeValueProcessor`` for an ``ExpressionAttributeValue``,
    ``UpdateExpressionFunctionEvaluator`` for an ``UpdateExpressionFunction``,
    ``ExecuteOperations`` for an ``UpdateExpressionValue``, and
    ``ExpressionAttributeResolvingProcessor`` for an ``UpdateExpressionPath`` while
    ``resolving``, which it turns off before the first child of every action, and a
    ``RemoveAction``'s one child is its path. The other walks return the node they were
    given, or raise; ``normalize`` reorders the children of the ``UpdateExpression`` nodes
    only, and the executor only reads. So a REMOVE clause (a clause of the expression, never
    inside a function's arguments) holding none but the node classes of its actions and
    their paths comes out of every request as it went in: walks only write back the parent
    and child links it already has. Only the copy's nodes are unlinked (``_SHARED`` stops
    ``_unlink_update_asts_once_validated``).
    """
    from moto.dynamodb.parsing.ast_nodes import (  # type: ignore[attr-defined]
        ExpressionAttribute,
        ExpressionAttributeName,
        ExpressionPathDescender,
        ExpressionSelector,
        Node,
        UpdateExpression,
        UpdateExpressionPath,
        UpdateExpressionRemoveAction,
        UpdateExpressionRemoveActions,
        UpdateExpressionRemoveClause,
    )

    unchanged = {
        UpdateExpressionRemoveClause,
        UpdateExpressionRemoveActions,
        UpdateExpressionRemoveAction,
        UpdateExpressionPath,
        ExpressionAttribute,
        ExpressionAttributeName,
        ExpressionSelector,
        ExpressionPathDescender,
    }

    def only_unchanged(node: Any) -> bool:
        return type(node) in unchanged and all(
            only_unchanged(child) for child in node.children or () if isinstance(child, Node)
        )

    shared: list[Any] = []
    expressions = [ast] if type(ast) is UpdateExpression else []
    while expressions:
        for child in expressions.pop().children or ():
            if type(child) is UpdateExpression:
                expressions.append(child)
            elif type(child) is UpdateExpressionRemoveClause and only_unchanged(child):
                shared.append(child)
    return shared


def _check_names_once_per_expression() -> None:
    """Skip the validator's walks that only read the AST and the request's names, once they
    passed for the same expression string and names.

    ``OverlappingPathsValidator`` (refuses two actions on one path) runs ``find_clauses`` over
    the subtree at every node of the update AST, and ``UpdateHashRangeKeyValidator`` refuses
    an update of a key attribute: both return the tree untouched and depend on nothing but
    its text, the ``ExpressionAttributeNames`` and the table's key names. A walk that raises
    is not remembered, so a request that fails them fails the same way, every time.
    """
    from moto.dynamodb.parsing.validators import (
        OverlappingPathsValidator,
        UpdateHashRangeKeyValidator,
    )

    def remembered(walker: type, inputs: Callable[[Any], tuple[Any, ...]]) -> None:
        walk = walker.traverse  # type: ignore[attr-defined]

        def traverse(self: Any, node: Any) -> Any:
            origin = getattr(node, _ORIGIN, None)
            if origin is None:
                return walk(self, node)
            passed: set[Any] = origin.__dict__.setdefault(_PASSED, set())
            try:
                key = (walker, *inputs(self))
                if key in passed:
                    return node
            except TypeError:  # a name that is not a string: nothing to remember it by
                return walk(self, node)
            result = walk(self, node)
            if len(passed) >= PASSED_CHECKS_PER_EXPRESSION:
                passed.clear()
            passed.add(key)
            return result

        setattr(walker, "traverse", traverse)  # noqa: B010

    def names(self: Any) -> tuple[Any, ...]:
        mapping = self.expression_attribute_names
        return (None,) if mapping is None else tuple(mapping.items())

    remembered(OverlappingPathsValidator, names)
    remembered(
        UpdateHashRangeKeyValidator,
        lambda self: (tuple(self.table_key_attributes), *names(self)),
    )


# Set on an update AST node: the node classes in its subtree, itself included (a frozenset).
_SUBTREE_TYPES = "_local_subtree_types"


def _walk_faster() -> None:
    """``DepthFirstTraverser.traverse_node_recursively`` with what it asks of each node's type
    answered once per type, and subtrees it has nothing to do in left unvisited.

    moto's validator walks a request's update AST seven times (a touch's has about 75
    nodes, 60 of them its REMOVE clause), and at every node asks ``isinstance(node, Node)``
    (an ``abc`` check) and whether the walk processes that node's type, rebuilding that tuple
    of types from ``_processing_map()``, a dict of bound methods, each time: answers that
    depend only on the node's and the walk's classes, so they are kept per class. The walk
    itself is moto's, step for step: children depth first, left to right, the
    ``pre_processing_of_child`` hook before each, a processed node put back into its
    parent's children at the same index.

    A walk without a hook (all but ``ExpressionAttributeResolvingProcessor``; the base
    class's does nothing) that meets a subtree holding no node of a type it processes would
    only visit it and change nothing: it skips it. What a subtree holds is kept on its root
    (``_SUBTREE_TYPES``, computed when first asked, so in the parsed AST once per expression
    and carried by its copies); a node whose subtree had a node replaced drops what it kept,
    to be computed anew when next asked. Processors only read the nodes below the one they
    process, and one that returns the node it was given has changed nothing (checked against
    moto's validators), so nothing else makes it stale: the checks of a touch's REMOVE paths
    leave what the copied AST holds as it was.
    """
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node  # type: ignore[attr-defined]

    no_hook = DepthFirstTraverser.pre_processing_of_child
    is_node: dict[type, bool] = {}
    # Per walk class: whether it has a hook, whether it processes each node class, and
    # whether it processes any class of each set of subtree classes.
    walks: dict[type, tuple[bool, dict[type, bool], dict[frozenset[type], bool]]] = {}

    def node_class(kind: type) -> bool:
        answer = is_node.get(kind)
        if answer is None:
            answer = is_node[kind] = issubclass(kind, Node)
        return answer

    # Each distinct set once: a pickle of the tree then holds, and rebuilds, each set once.
    type_sets: dict[frozenset[type], frozenset[type]] = {}

    def subtree_types(node: Any) -> frozenset[type]:
        types: frozenset[type] | None = node.__dict__.get(_SUBTREE_TYPES)
        if types is None:
            found = {type(node)}
            for child in node.children or ():
                if node_class(type(child)):
                    found |= subtree_types(child)
            types = frozenset(found)
            types = node.__dict__[_SUBTREE_TYPES] = type_sets.setdefault(types, types)
        return types

    def visit(
        self: Any, node: Any, child_id: int, walk: tuple[bool, dict[type, bool], Any]
    ) -> tuple[Any, bool]:
        """moto's step at ``node``; the node now in its place, and whether any changed."""
        has_hook, processes, wanted = walk
        changed = False
        parent_node = node.parent
        children = node.children
        if children is not None:
            for i, child_node in enumerate(children):
                if has_hook:
                    self.pre_processing_of_child(node, i)
                if not node_class(type(child_node)):
                    continue
                if not has_hook:
                    types = subtree_types(child_node)
                    needed = wanted.get(types)
                    if needed is None:
                        needed = wanted[types] = any(
                            processed(self, processes, kind) for kind in types
                        )
                    if not needed:
                        continue
                changed |= visit(self, child_node, i, walk)[1]
        if processed(self, processes, type(node)):
            result = self.process(node)
            result.parent = parent_node
            if parent_node:
                parent_node.children[child_id] = result
            # A processor that returns the node it was given has only read it (the checks).
            changed |= result is not node
            node = result
        if changed:
            node.__dict__.pop(_SUBTREE_TYPES, None)
        return node, changed

    def processed(self: Any, processes: dict[type, bool], kind: type) -> bool:
        answer = processes.get(kind)
        if answer is None:
            answer = processes[kind] = issubclass(kind, tuple(self._processing_map()))
        return answer

    def walk_of(self: Any) -> tuple[bool, dict[type, bool], dict[frozenset[type], bool]]:
        walk = walks.get(type(self))
        if walk is None:
            walk = walks[type(self)] = (type(self).pre_processing_of_child is not no_hook, {}, {})
        return walk

    def traverse_node_recursively(self: Any, node: Any, child_id: int = -1) -> Any:
        if not node_class(type(node)):
            return node
        return visit(self, node, child_id, walk_of(self))[0]

    setattr(DepthFirstTraverser, "traverse_node_recursively", traverse_node_recursively)  # noqa: B010
    _resolve_by_parent_type()
    _check_paths_set_or_removed_without_resolving()
    _find_clauses_by_type()


def _resolve_by_parent_type() -> None:
    """``ExpressionAttributeResolvingProcessor.pre_processing_of_child`` (called before every
    child of every node of the one walk with a hook) with its ``abc`` ``isinstance`` of the
    parent against the four action classes answered once per class: it still resolves the
    children of an action but its first (the path it sets), and leaves ``resolving`` alone
    under any other node."""
    from moto.dynamodb.parsing.validators import (  # type: ignore[attr-defined]
        ExpressionAttributeResolvingProcessor,
        UpdateExpressionAddAction,
        UpdateExpressionDeleteAction,
        UpdateExpressionRemoveAction,
        UpdateExpressionSetAction,
    )

    actions = (
        UpdateExpressionSetAction,
        UpdateExpressionRemoveAction,
        UpdateExpressionDeleteAction,
        UpdateExpressionAddAction,
    )
    is_action: dict[type, bool] = {}

    def pre_processing_of_child(self: Any, parent_node: Any, child_id: int) -> None:
        kind = type(parent_node)
        action = is_action.get(kind)
        if action is None:
            action = is_action[kind] = issubclass(kind, actions)
        if action:
            self.resolving = child_id != 0

    setattr(  # noqa: B010
        ExpressionAttributeResolvingProcessor, "pre_processing_of_child", pre_processing_of_child
    )


def _check_paths_set_or_removed_without_resolving() -> None:
    """``ExpressionAttributeResolvingProcessor.process_expression_path_node`` for a path of
    one name that an action sets or removes (its first operand: ``resolving`` is off), without
    resolving it against the item.

    moto resolves such a path only to refuse one whose parent does not exist; for a path of
    one name there is no parent: the resolution either finds the attribute or makes a
    ``NoneExistingPath`` it marks creatable, and the node is returned unchanged either way. What
    it can raise it still does, in the same order: a placeholder missing from
    ``ExpressionAttributeNames``, a reserved word, an item without attributes. A touch removes
    a dozen stale counters this way. Longer paths, and any other node, go to moto's.
    """
    from moto.dynamodb.exceptions import ExpressionAttributeNameNotDefined
    from moto.dynamodb.parsing.ast_nodes import (  # type: ignore[attr-defined]
        ExpressionAttribute,
        ExpressionAttributeName,
    )
    from moto.dynamodb.parsing.validators import (
        ExpressionAttributeResolvingProcessor,
        ExpressionPathResolver,
    )

    process = ExpressionAttributeResolvingProcessor.process_expression_path_node

    def process_expression_path_node(self: Any, node: Any) -> Any:
        children = node.children
        if self.resolving or len(children) != 1:
            return process(self, node)
        child = children[0]
        kind = type(child)
        if kind is not ExpressionAttributeName and kind is not ExpressionAttribute:
            return process(self, node)
        self.item.attrs  # noqa: B018 - moto reads it first, and fails here without an item
        if kind is ExpressionAttributeName:
            placeholder = child.get_attribute_name_placeholder()
            try:
                self.expression_attribute_names[placeholder]
            except KeyError:
                raise ExpressionAttributeNameNotDefined(placeholder) from None
        else:
            ExpressionPathResolver.raise_exception_if_keyword(child.get_attribute_name())
        return node

    setattr(  # noqa: B010
        ExpressionAttributeResolvingProcessor,
        "process_expression_path_node",
        process_expression_path_node,
    )


def _find_clauses_by_type() -> None:
    """``Node.find_clauses``, which the executor and ``normalize`` run over the whole update
    AST, asking two ``abc`` ``isinstance`` questions of each child: whether to descend into a
    child depends on its class alone, so it is answered once per class. Same clauses, same
    order."""
    from moto.dynamodb.parsing.ast_nodes import (  # type: ignore[attr-defined]
        Expression,
        Node,
        UpdateExpressionFunction,
    )

    descends: dict[type, bool] = {}

    def find_clauses(self: Any, clause_types: Any) -> list[Any]:
        clauses: list[Any] = []
        for child in self.children or []:
            kind = type(child)
            if kind in clause_types:
                clauses.append(child)
                continue
            descend = descends.get(kind)
            if descend is None:
                descend = descends[kind] = isinstance(child, (Expression, UpdateExpressionFunction))
            if descend:
                clauses.extend(child.find_clauses(clause_types))
        return clauses

    setattr(Node, "find_clauses", find_clauses)  # noqa: B010


def _unlink_update_asts_once_validated() -> None:
    """Drop the parent links of a request's update AST once moto's validator is done with
    it, so that it is freed at once rather than by the garbage collector.

    moto's validator works on a copy of the AST (a touch's has some 75 nodes), whose nodes
    point to their parents and so form cycles: every request left them for a collection,
    about one every two touches, a tenth of a touch's CPU. Only the validator's walks read
    ``parent`` (to put a processed node back in its place); ``normalize`` and the executor
    after it read ``children`` alone. So once the walks are done, passed or failed, each
    node's ``parent`` is cleared. Only moto AST nodes are touched, never the item's values.
    """
    from moto.dynamodb.parsing.ast_nodes import Node  # type: ignore[attr-defined]
    from moto.dynamodb.parsing.validators import Validator

    validate = Validator.validate
    is_node: dict[type, bool] = {}

    def unlink(root: Any) -> None:
        nodes = [root]
        while nodes:
            node = nodes.pop()
            node.parent = None
            for child in node.children or ():
                kind = type(child)
                answer = is_node.get(kind)
                if answer is None:
                    answer = is_node[kind] = issubclass(kind, Node)
                # A shared clause keeps its links: it belongs to the cached AST.
                if answer and _SHARED not in child.__dict__:
                    nodes.append(child)

    def validate_and_unlink(self: Any) -> Any:
        try:
            result = validate(self)
        finally:
            unlink(self.node_to_validate)
        if result is not self.node_to_validate:
            unlink(result)
        return result

    setattr(Validator, "validate", validate_and_unlink)  # noqa: B010


def _project_top_level_names_directly() -> None:
    """``Item.project`` without the round trip through plain Python for the usual case.

    moto projects an item (a query's results on an index with an ``INCLUDE`` projection, then
    again for a ``ProjectionExpression``) by converting every attribute to plain Python with
    boto3's deserializer, picking the paths, serializing them back and building a new item
    whose size is re-checked at every attribute: about 0.6 ms an item, most of a 1000-item
    ``Query``. When every path is one top-level name and every attribute is a string or a
    number, the result is computed here with the same deserializer and serializer, on the
    same values, in the same order: a number still goes through ``Decimal`` and back (so
    ``1e2`` comes back as moto writes it, ``1E+2``), a number the deserializer refuses still
    raises, an item over moto's size limit still raises ``ItemSizeTooLarge`` (the size only
    grows as attributes are added, so checking the total once decides as moto's check at each
    addition does). Anything else (a nested path, a list index, sets, maps, binary...) goes
    to moto's own.
    """
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models import dynamo_type
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    project = Item.project
    deserialize = dynamo_type.deserializer.deserialize
    serialize = dynamo_type.serializer.serialize
    # LimitedSizeDict's bound: moto measured AWS's 400 KB limit as between 409 and 410 KB.
    size_limit = 405000

    def project_names(self: Any, projection_expressions: list[list[str]]) -> Any:
        names = []
        for path in projection_expressions:
            if len(path) != 1 or "[" in path[0]:
                return project(self, projection_expressions)
            names.append(path[0])
        plain: dict[str, Any] = {}
        for key, attribute in self.attrs.items():
            if attribute.type == "S" and type(attribute.value) is str:
                plain[key] = attribute.value
            elif attribute.type == "N":
                plain[key] = deserialize({"N": attribute.value})
            else:
                return project(self, projection_expressions)
        result: Any = Item.__new__(Item)
        result.hash_key = self.hash_key
        result.range_key = self.range_key
        attrs = LimitedSizeDict.__new__(LimitedSizeDict)
        size = 0
        for name in names:
            if name in plain and name not in attrs:
                scalar = plain[name]
                if type(scalar) is str:
                    # What serialize() and DynamoType() make of a string, and its size().
                    value = DynamoType.__new__(DynamoType)
                    value.type, value.value = "S", scalar
                    size += bytesize(name) + bytesize(scalar)
                else:
                    value = DynamoType(dict(serialize(scalar)))
                    size += bytesize(name) + value.size()
                dict.__setitem__(attrs, name, value)
        if size > size_limit:
            raise ItemSizeTooLarge
        result.attrs = attrs
        return result

    setattr(Item, "project", project_names)  # noqa: B010


def _parse_each_condition_once_per_expression() -> None:
    """Parse a ``ConditionExpression`` once per expression string and the names it uses, and
    fill in each request's values.

    moto's parse (lex, paths, functions, comparators, parentheses...) builds the same tree
    for the same text and the same values of the ``#names`` it looks up: the values it looks
    up (``:value``) are only stored in their leaves, and read when the tree is turned into
    the condition moto evaluates (``_make_op_condition``, run anew per request, so nothing
    evaluated is shared). So the tree is kept, keyed by the text and the names it uses, and a
    request gets a copy of the path to each value leaf holding its own value, the lists of
    names and values found, and moto's own ``_make_op_condition``. A request whose names or
    values lack one the expression uses, or whose names are not strings, is parsed by moto
    as before, and fails where it did; a parse that fails is not kept.
    """
    from moto.dynamodb.comparisons import ConditionExpressionParser

    parse = ConditionExpressionParser.parse
    make_op_condition = ConditionExpressionParser._make_op_condition
    value_kind = ConditionExpressionParser.Kind.EXPRESSION_ATTRIBUTE_VALUE
    # Per expression string: the ``#names`` its parse looks up.
    names_used: dict[str, tuple[str, ...]] = {}
    # Per expression and values of those names: the tree, the names and the values found.
    trees: dict[tuple[str, ...], tuple[Any, tuple[str, ...], tuple[str, ...]]] = {}

    def key_of(expression: str, names: Any) -> tuple[str, ...] | None:
        try:
            key = (expression, *(names[name] for name in names_used[expression]))
        except (KeyError, TypeError):
            return None
        return key if all(type(part) is str for part in key) else None

    def parse_and_keep(self: Any) -> Any:
        trees_made: list[Any] = []

        def make_and_keep(node: Any) -> Any:
            if not trees_made:  # the root; moto's recursion comes here too
                trees_made.append(node)
            return make_op_condition(self, node)

        self._make_op_condition = make_and_keep
        try:
            result = parse(self)
        finally:
            del self._make_op_condition
        expression = self.condition_expression
        if trees_made and type(expression) is str:
            names_found = tuple(self.expr_attr_names_found)
            if len(names_used) >= EXPRESSION_CACHE_SIZE:
                names_used.clear()
            names_used[expression] = tuple(
                dict.fromkeys(name for name in names_found if name.startswith("#"))
            )
            key = key_of(expression, self.expression_attribute_names)
            if key is not None:
                if len(trees) >= EXPRESSION_CACHE_SIZE:
                    trees.clear()
                trees[key] = (trees_made[0], names_found, tuple(self.expr_attr_values_found))
        return result

    def filled(node: Any, values: dict[str, Any]) -> Any:
        if node.kind == value_kind:
            return node._replace(value=values[node.text])
        if not node.children:
            return node
        return node._replace(children=[filled(child, values) for child in node.children])

    def parse_each_expression_once(self: Any) -> Any:
        expression = self.condition_expression
        if expression not in names_used:
            return parse_and_keep(self)
        key = key_of(expression, self.expression_attribute_names)
        kept = None if key is None else trees.get(key)
        if kept is None:
            return parse_and_keep(self)
        tree, names_found, values_found = kept
        values = self.expression_attribute_values
        if values_found and (
            type(values) is not dict or not all(name in values for name in values_found)
        ):
            return parse(self)
        self.expr_attr_names_found.extend(names_found)
        self.expr_attr_values_found.extend(values_found)
        return make_op_condition(self, filled(tree, values) if values_found else tree)

    setattr(ConditionExpressionParser, "parse", parse_each_expression_once)  # noqa: B010


def _parse_each_condition_once_per_request() -> None:
    """Parse a request's ``ConditionExpression`` once where moto parses it twice.

    moto's ``UpdateItem`` (and ``PutItem``, ``DeleteItem``) parses the condition in its
    handler, only to learn which names and values it uses, and parses it again in its
    backend, with the very same expression, names and values objects, to evaluate it. The
    second parse in a thread is given the first's result when all three are the same
    objects: the parse reads nothing else, and its tree is only evaluated, never changed.
    The result is given once; any other parse runs as before.
    """
    from moto.dynamodb.comparisons import ConditionExpressionParser

    parse = ConditionExpressionParser.parse
    last = threading.local()

    def parse_once(self: Any) -> Any:
        previous = getattr(last, "parse", None)
        last.parse = None
        if (
            previous is not None
            and previous[0] == self.condition_expression
            and previous[1] is self.expression_attribute_names
            and previous[2] is self.expression_attribute_values
        ):
            self.expr_attr_names_found.extend(previous[4])
            self.expr_attr_values_found.extend(previous[5])
            return previous[3]
        result = parse(self)
        last.parse = (
            self.condition_expression,
            self.expression_attribute_names,
            self.expression_attribute_values,
            result,
            tuple(self.expr_attr_names_found),
            tuple(self.expr_attr_values_found),
        )
        return result

    setattr(ConditionExpressionParser, "parse", parse_once)  # noqa: B010


def _serialize_scalar_attribute_values_directly() -> None:
    """Write a DynamoDB string or number ``AttributeValue`` into a JSON answer directly.

    moto's answer serializer walks the botocore model for every value: for each of the ten
    members of an ``AttributeValue`` it builds a context and asks its alias providers where
    the member's value is, to find the one present. A 1000-item ``Query`` answer holds
    several thousand of them, a third of the call. For a value that is one ``S`` or ``N``
    holding a string, and members written under their own name (as the model has them), that
    search finds exactly that member and writes it as it is: here it is written so directly,
    through the serializer's own ``_default_serialize``. Any other value (sets, maps, lists,
    binary, NULL, BOOL) takes moto's way.
    """
    from moto.core.serialize import BaseJSONSerializer

    serialize_structure = BaseJSONSerializer._serialize_type_structure
    direct: dict[int, frozenset[str]] = {}

    def scalar_members(shape: Any) -> frozenset[str]:
        members = direct.get(id(shape))
        if members is None:
            members = direct[id(shape)] = frozenset(
                name
                for name, member in shape.members.items()
                if name in ("S", "N")
                and member.type_name == "string"
                and member.serialization.get("name", name) == name
            )
        return members

    def serialize_type_structure(
        self: Any, serialized: Any, value: Any, shape: Any, key: str
    ) -> None:
        if key and type(value) is dict and len(value) == 1 and shape.name == "AttributeValue":
            ((member, scalar),) = value.items()
            if type(scalar) is str and member in scalar_members(shape):
                self._default_serialize(serialized, {member: scalar}, shape, key)
                return
        serialize_structure(self, serialized, value, shape, key)

    setattr(BaseJSONSerializer, "_serialize_type_structure", serialize_type_structure)  # noqa: B010


# Leaves of a result whose answer is kept (a touch's has two); larger ones are serialized anew.
SERIALIZED_RESULT_LEAVES = 32
# Answers kept at once: results of this size repeat (an UpdateItem's is its table's name and
# capacity) or are not worth keeping; the bound keeps varied ones from growing the cache.
SERIALIZED_RESULTS = 256


def _result_key(value: Any, leaves: list[int]) -> Any:
    """``value`` as a hashable key that tells apart everything serializing it could tell
    apart (types included: ``1``, ``1.0`` and ``True``), or ``None`` if it holds anything but
    dicts with string keys, lists, strings, numbers, booleans and ``None``, or too much."""
    kind = type(value)
    if kind is dict:
        members = []
        for name, member in value.items():
            if type(name) is not str:
                return None
            key = _result_key(member, leaves)
            if key is None:
                return None
            members.append((name, key))
        return (dict, tuple(members))
    if kind is list:
        elements = []
        for element in value:
            key = _result_key(element, leaves)
            if key is None:
                return None
            elements.append(key)
        return (list, tuple(elements))
    if kind in (str, int, float, bool) or value is None:
        leaves[0] -= 1
        # -0.0 == 0.0, but each is written as it is.
        return None if leaves[0] < 0 else (kind, repr(value) if kind is float else value)
    return None


def _serialize_each_small_result_once() -> None:
    """Serialize a small result once, where moto serializes every answer anew.

    moto's serializer walks the botocore model of the operation's output for every answer:
    for a touch's ``UpdateItem`` (whose result is its table's name and consumed capacity,
    the same every time) about a tenth of the call. Its answer depends on the result, the
    operation, the serializer class, moto's pretty-print setting and the handler's response
    transformers alone, so it is kept under those, for results of plain values with a few
    leaves; the headers are handed out as a copy each time, as moto adds its own to them.
    Errors, larger results and results holding anything else are serialized as before.
    """
    from moto import settings
    from moto.core.responses import ActionResult

    execute_result = ActionResult.execute_result
    answers: dict[Any, tuple[Any, dict[str, str], Any]] = {}

    def execute_result_once(self: Any, context: Any) -> Any:
        result = _result_key(self.result, [SERIALIZED_RESULT_LEAVES])
        if result is None:
            return execute_result(self, context)
        transformers = getattr(context.response, "RESPONSE_KEY_PATH_TO_TRANSFORMER", None)
        key = (
            result,
            context.service_model.service_name,
            context.operation_model.name,
            context.serializer_class,
            settings.PRETTIFY_RESPONSES,
            None if transformers is None else tuple(transformers.items()),
        )
        answer = answers.get(key)
        if answer is None:
            status, headers, body = execute_result(self, context)
            if len(answers) >= SERIALIZED_RESULTS:
                answers.clear()
            answer = answers[key] = (status, dict(headers), body)
        return answer[0], dict(answer[1]), answer[2]

    setattr(ActionResult, "execute_result", execute_result_once)  # noqa: B010


def _copy_tables_for_transactions_by_item() -> None:
    """Keep what a ``TransactWriteItems`` needs to undo, not a deep copy of every table it
    writes once per item in it.

    moto keeps a deep copy of each table a transaction writes, to put in the table's place if
    the transaction is cancelled, and takes it for every item: a ``$connect`` (two items in
    the connections table) copied the whole table twice, ~0.1 ms a row, most of what a
    connect costs at 1000 connections. The copy kept here is the table with its own item
    containers: a ``Put`` or ``Delete`` replaces or removes an item in the live table's
    containers and leaves the copy's as they were, and the one operation that changes an item
    in place, ``Update``, gets a deep copy of its item in the copy, taken before anything
    runs, as moto's copy is. Everything else in the copy is the table's own (indexes,
    settings), which no operation of a transaction changes, and the live table is dropped
    when the copy takes its place. A table with a stream (whose records a transaction
    appends), without a range key, of another class, or whose update keys cannot be read
    gets moto's deep copy.
    """
    import copy
    from collections import defaultdict

    import moto.dynamodb.models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    transaction = threading.local()

    def undo_copy(table: Any, update_keys: list[dict[str, Any]]) -> Any:
        if table.stream_shard is not None or not table.range_key_attr:
            return copy.deepcopy(table)
        kept = copy.copy(table)
        kept.items = defaultdict(dict, {h: dict(items) for h, items in table.items.items()})
        for key in update_keys:
            hash_value = DynamoType(key[table.hash_key_attr])
            range_value = DynamoType(key[table.range_key_attr])
            item = table.items.get(hash_value, {}).get(range_value)
            if item is not None:
                kept.items[hash_value][range_value] = copy.deepcopy(item)
        return kept

    class CopyTablesForUndo:
        """``copy`` as moto's DynamoDB backend module sees it."""

        def __getattr__(self, name: str) -> Any:
            return getattr(copy, name)

        @staticmethod
        def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
            copies: dict[int, Any] | None = getattr(transaction, "copies", None)
            if copies is None or type(value) is not Table:
                return copy.deepcopy(value, memo)
            # Every copy is taken before the transaction changes anything: one serves all.
            if id(value) not in copies:
                try:
                    update_keys = [
                        op["Key"]
                        for op_type, op in transaction.operations
                        if op_type == "Update" and op.get("TableName") == value.name
                    ]
                    copies[id(value)] = undo_copy(value, update_keys)
                except (KeyError, TypeError, AttributeError, IndexError):
                    copies[id(value)] = copy.deepcopy(value, memo)
            return copies[id(value)]

    transact_write_items = DynamoDBBackend.transact_write_items

    def transact(self: Any, transact_items: list[dict[str, Any]]) -> None:
        try:
            transaction.operations = [
                next(iter(item.items())) for item in transact_items if isinstance(item, dict)
            ]
        except StopIteration:
            transaction.operations = []
        transaction.copies = {}
        try:
            transact_write_items(self, transact_items)
        finally:
            transaction.copies = None
            transaction.operations = []

    # The name the backend module imported, rebound where it looks it up.
    setattr(moto.dynamodb.models, "copy", CopyTablesForUndo())  # noqa: B010
    setattr(DynamoDBBackend, "transact_write_items", transact)  # noqa: B010


def _list_handler_methods_once() -> None:
    """moto looks an action up among its handler class's methods with ``inspect.getmembers``
    on every request (a tenth of a millisecond over some 200 members); the classes are not
    changed once serving, so each class's list is read once."""
    import moto.core.responses
    from moto.core.utils import method_names_from_class

    names: dict[type, list[str]] = {}

    def method_names(clazz: type) -> list[str]:
        listed = names.get(clazz)
        if listed is None:
            listed = names[clazz] = method_names_from_class(clazz)
        return listed

    # The name responses.py imported from moto.core.utils, rebound where it looks it up.
    setattr(moto.core.responses, "method_names_from_class", method_names)  # noqa: B010


class _LiveInstances:
    """A moto model class's ``instances_tracked`` that holds its instances weakly: what
    iterating it yields is the instances still alive, in the order they were made."""

    def __init__(self, instances: Iterable[Any] = ()) -> None:
        self._refs: dict[int, Callable[[], Any]] = {}
        for instance in instances:
            self.append(instance)

    def append(self, instance: Any) -> None:
        try:
            self._refs[id(instance)] = weakref.KeyedRef(instance, self._forget, id(instance))
        except TypeError:  # a class with ``__slots__`` and no weak reference: kept strongly
            self._refs[id(instance)] = lambda: instance

    def _forget(self, ref: weakref.KeyedRef[Any, int]) -> None:
        key = ref.key
        if self._refs.get(key) is ref:
            del self._refs[key]

    def __iter__(self) -> Iterator[Any]:
        for ref in list(self._refs.values()):
            instance = ref()
            if instance is not None:
                yield instance

    def __len__(self) -> int:
        return len(self._refs)


def _track_model_instances_weakly() -> None:
    """Keep moto's list of every model instance from holding each one forever.

    moto appends every instance of a ``BaseModel`` to its class's ``instances_tracked``, for
    its dashboard (``/moto-api/data.json``) and to dispose of S3 keys on reset, and never
    removes one: a DynamoDB ``UpdateItem`` makes two copies of the item (``Item`` is a model),
    an SQS send a ``Message``, so the process grew by some 2.5 KB a touch, and every full
    garbage collection walked all of them (0.2 s after a few thousand touches, more with
    every minute of load). Here each class's list holds them weakly: the dashboard and a reset
    see the instances alive, as many as plain moto's that anything still refers to. A list
    that moto's reset replaced is converted on the next instance made.
    """
    from moto.core.common_models import BaseModel

    new = BaseModel.__new__

    def track_weakly(cls: type, *args: Any, **kwargs: Any) -> Any:
        tracked = cls.instances_tracked  # type: ignore[attr-defined]
        if type(tracked) is not _LiveInstances:
            cls.instances_tracked = _LiveInstances(tracked)  # type: ignore[attr-defined]
        return new(cls, *args, **kwargs)

    setattr(BaseModel, "__new__", staticmethod(track_weakly))  # noqa: B010


def _speed_up_moto() -> None:
    import moto.backends
    import moto.core.utils
    import moto.sqs.models

    modules = tuple(moto.backends.list_of_moto_modules())
    moto.backends.list_of_moto_modules = lambda: iter(modules)
    original = moto.core.utils.unix_time

    def unix_time(dt: datetime | None = None) -> float:
        return time.time() if dt is None else float(original(dt))

    def unix_time_millis(dt: datetime | None = None) -> float:
        return unix_time(dt) * 1000.0

    # The names moto's SQS model imported from moto.core.utils, rebound where it looks them up.
    setattr(moto.sqs.models, "unix_time", unix_time)  # noqa: B010
    setattr(moto.sqs.models, "unix_time_millis", unix_time_millis)  # noqa: B010
    _track_model_instances_weakly()
    _parse_each_expression_once()
    _check_names_once_per_expression()
    _walk_faster()
    _unlink_update_asts_once_validated()
    _project_top_level_names_directly()
    _list_handler_methods_once()
    _parse_each_condition_once_per_expression()
    _parse_each_condition_once_per_request()
    _serialize_scalar_attribute_values_directly()
    _serialize_each_small_result_once()
    _copy_tables_for_transactions_by_item()


# The one DynamoDB API version the lean front serves (moto answers older ones elsewhere).
_DYNAMODB_TARGET = "DynamoDB_20120810."
# What botocore sends a DynamoDB call as; moto reads any other type differently.
_DYNAMODB_CONTENT_TYPE = "application/x-amz-json-1.0"
# Request headers after which flask-cors answers other than ``Access-Control-Allow-Origin: *``.
_CORS_REQUEST_HEADERS = ("HTTP_ORIGIN", "HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK")


class _LeanRequest:
    """What ``BaseResponse.setup_class`` and the JSON parser read of a werkzeug request, for
    the one shape the lean front takes: a ``POST /`` without query, form, files or encoding,
    its body already read."""

    from_wsgi_server = True
    method = "POST"
    path = raw_path = "/"
    content_encoding = None

    def __init__(self, environ: dict[str, Any], body: bytes, raw_url: str) -> None:
        from moto.core.request import EnvironHeaders
        from werkzeug.datastructures import CombinedMultiDict, ImmutableMultiDict

        self.environ = environ
        self.headers = EnvironHeaders(environ)
        self.data = body
        self.raw_url = raw_url
        self.content_type = environ.get("CONTENT_TYPE", "")
        empty: ImmutableMultiDict[str, Any] = ImmutableMultiDict()
        self.form = self.files = empty
        self.values = CombinedMultiDict([empty, empty])


def _dynamodb_service(authorization: str) -> bool:
    """Whether moto's dispatcher reads ``authorization``'s credential scope as DynamoDB's."""
    try:
        _, _, _, service, _ = authorization.split(",")[0].split()[1].split("/")
    except (ValueError, IndexError):
        return False
    return service.lower() == "dynamodb"


def _lean_front(app: Callable[..., Any]) -> Callable[..., Any]:
    """moto's WSGI app with DynamoDB calls answered by moto's own ``DynamoHandler``, without
    Flask, the domain dispatcher or werkzeug's request parsing on the way.

    moto's dispatcher sends a request to DynamoDB's Flask app when its credential scope names
    ``dynamodb`` and its ``X-Amz-Target`` is a post-2011 DynamoDB one; Flask matches ``/``,
    builds a werkzeug request and calls ``DynamoHandler.dispatch(request, request.raw_url,
    dict(request.headers))``, whose answer becomes a Flask ``Response`` to which flask-cors
    adds ``Access-Control-Allow-Origin: *``. Here that request is recognised from the WSGI
    environ, the handler gets a request object answering what ``setup_class`` reads with the
    same values (the body, moto's ``EnvironHeaders``, werkzeug's URL of the request), and its
    answer goes through the same ``Response`` and the same CORS header: the same bytes. Any
    request of another shape (another path, method, content type or encoding, a query
    string, a CORS request, recording on) goes to moto's app, as does every other service.
    A handler's exception reaches the server as it does through Flask in debug mode.
    """
    from flask import Response
    from moto.dynamodb.responses import DynamoHandler
    from moto.moto_api import recorder
    from werkzeug.sansio.utils import get_current_url, get_host

    # DynamoDB calls are answered one at a time: they would share one interpreter lock anyway
    # (and their writes ``local.fidelity``'s lock), and 16 threads each holding a part of it
    # made every call wait for all of them; SQS (a long poll above all) never waits for it.
    one_at_a_time = threading.Lock()

    @lru_cache(maxsize=64)
    def raw_url(scheme: str, host: str | None, server_name: str, server_port: str) -> str:
        port = int(server_port) if server_port.isdigit() else None
        root = get_current_url(scheme, get_host(scheme, host, (server_name, port)), "/")
        return root.rstrip("/") + "/"

    def lean(environ: dict[str, Any]) -> bool:
        return (
            environ.get("REQUEST_METHOD") == "POST"
            and environ.get("PATH_INFO") == "/"
            and environ.get("RAW_URI", "/") == "/"
            and not environ.get("QUERY_STRING")
            and not environ.get("SCRIPT_NAME")
            and environ.get("CONTENT_TYPE") == _DYNAMODB_CONTENT_TYPE
            and str(environ.get("CONTENT_LENGTH", "")).isdigit()
            and "HTTP_CONTENT_ENCODING" not in environ
            and str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith(_DYNAMODB_TARGET)
            and _dynamodb_service(str(environ.get("HTTP_AUTHORIZATION", "")))
            and not any(name in environ for name in _CORS_REQUEST_HEADERS)
            and not recorder._user_enabled
        )

    def front(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not lean(environ):
            return app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        url = raw_url(
            environ.get("wsgi.url_scheme", "http"),
            environ.get("HTTP_HOST"),
            environ.get("SERVER_NAME", ""),
            str(environ.get("SERVER_PORT", "")),
        )
        request = _LeanRequest(environ, body, url)
        with one_at_a_time:
            status, headers, content = DynamoHandler.dispatch(request, url, dict(request.headers))
        response = Response(response=content, status=status, headers=headers)
        if not response.headers.get("Access-Control-Allow-Origin"):
            response.headers.add("Access-Control-Allow-Origin", "*")
        return response(environ, start_response)

    return front


def _answer_dynamodb_in_the_loop(server: Any) -> None:
    """Have waitress's loop thread serve a DynamoDB call itself, where waitress hands every
    request to one of its threads.

    Handing a request over costs more CPU than reading it and writing its answer (the worker
    is woken, takes the interpreter lock from the loop, and wakes the loop again when done),
    and DynamoDB calls are answered one at a time anyway (``_lean_front``). A request that
    arrives on a connection with none in service, and whose ``X-Amz-Target`` and credential
    scope are DynamoDB's, is served right after the loop read it, by waitress's own
    ``HTTPChannel.service``: same task, same app, same bytes. Anything else (an SQS long poll
    above all, which must not hold up the loop), and a request that arrives while another on
    its connection is in service, goes to waitress's threads as before.
    """
    from waitress.channel import HTTPChannel

    class Channel(HTTPChannel):
        receiving = False
        serve_here = False

        def received(self, data: bytes) -> bool:
            # waitress adds the task while it holds the requests' lock, which service() takes.
            self.receiving = True
            try:
                result: bool = super().received(data)
            finally:
                self.receiving = False
            if self.serve_here:
                self.serve_here = False
                self.service()
            return result

    def dynamodb_call(request: Any) -> bool:
        headers = request.headers
        return (
            not request.error
            and str(headers.get("X_AMZ_TARGET", "")).startswith(_DYNAMODB_TARGET)
            and _dynamodb_service(str(headers.get("AUTHORIZATION", "")))
        )

    add_task = server.add_task

    def serve_dynamodb_here(channel: Any) -> None:
        if channel.receiving and dynamodb_call(channel.requests[0]):
            channel.serve_here = True
        else:
            add_task(channel)

    accept = server.handle_accept

    def accept_every_waiting_connection() -> None:
        # waitress accepts one connection per turn of its loop, and a turn now serves a
        # call on every ready connection: a burst of new ones (a thousand $connects) waited
        # turn after turn, past the clients' read timeout.
        while len(server.active_channels) < server.adj.connection_limit:
            open_before = len(server.active_channels)
            accept()
            if len(server.active_channels) == open_before:
                return

    server.channel_class = Channel
    server.add_task = serve_dynamodb_here
    server.handle_accept = accept_every_waiting_connection


def waitress_server(app: Callable[..., Any], listener: socket.socket, **adjustments: Any) -> Any:
    """waitress serving ``app`` on ``listener`` as moto's process does; ``adjustments`` (waitress's
    settings) override its threads and connection limit.

    Its loop waits with ``poll()``, not waitress's default ``select()``: ``select()`` fails on
    any socket numbered 1024 or more (``ValueError: filedescriptor out of range``), which ended
    the loop thread and left moto answering nothing once that many were open; with
    ``MOTO_CONNECTION_LIMIT`` connections, and a file limit above 1024, they can be. A socket
    closed under ``poll()`` is reported on it, where ``select()`` raised ``EBADF``.
    """
    from waitress.server import create_server

    settings: dict[str, Any] = {
        "threads": MOTO_THREADS,
        "connection_limit": MOTO_CONNECTION_LIMIT,
        "asyncore_use_poll": True,
    }
    return create_server(app, sockets=[listener], **(settings | adjustments))


def serve(fd: int, *, fast_path: bool = True) -> None:
    """Serve moto on the listening socket ``fd`` until stdin closes."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    patch_moto()
    if fast_path:
        _speed_up_moto()
    # waitress warns of every queued request under load; the gateway's log is the one to read.
    logging.getLogger("waitress").setLevel(logging.ERROR)
    app: Callable[..., Any] = DomainDispatcherApplication(create_backend_app)
    if fast_path:
        app = _lean_front(app)
    server = waitress_server(app, socket.socket(fileno=fd))
    if fast_path:
        _answer_dynamodb_in_the_loop(server)
        # What is loaded by now lives as long as the process: full collections, which a
        # request's cyclic garbage (its update AST's parent links) sets off, skip it.
        gc.collect()
        gc.freeze()
    thread = threading.Thread(target=server.run, name="moto", daemon=True)
    thread.start()
    try:
        print(READY_LINE, flush=True)
        sys.stdin.read()
    except BrokenPipeError:
        pass  # the process that started this one stopped before reading on
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.moto_process")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket")
    parser.add_argument(
        PLAIN_FLAG,
        dest="fast_path",
        action="store_false",
        help="without the speed-ups (patched like AWS all the same)",
    )
    options = parser.parse_args(argv)
    serve(options.fd, fast_path=options.fast_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
