"""User tools for the tests, as a user would write them: plain functions and a class."""

import ast
import asyncio
import operator
import time

OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _eval(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in OPS:
        return OPS[type(node.op)](_eval(node.left), _eval(node.right))
    raise ValueError("only numbers and + - * / are allowed")


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression.

    Args:
        expression: numbers and + - * /, e.g. 37 * 59
    """
    return str(_eval(ast.parse(expression, mode="eval").body))


async def slow_add(a: int, b: int = 1) -> int:
    """Add two integers, slowly."""
    await asyncio.sleep(0.01)
    return a + b


def sleepy(seconds: float) -> str:
    """Sleep, then answer."""
    time.sleep(seconds)
    return "awake"


def no_hints(x):
    return x


class KeyValue:
    """Look a key up in a small table."""

    name = "kv_get"

    def __init__(self):
        self.table = {"a": {"n": 1}}

    def run(self, key: str) -> dict:
        """:param key: the key to read"""
        return self.table[key]
