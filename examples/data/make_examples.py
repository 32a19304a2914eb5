"""Write the small bilingual example datasets in this folder (deterministic: same files every run).

    python examples/data/make_examples.py [--out DIR]

The tasks are simple and patterned (arithmetic, capitals, unit conversion, word reversal,
sentiment, a tiny phrase dictionary) so that a tiny model can visibly learn them in the quickstart.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

CAPITALS = [
    ("France", "Paris", "法国", "巴黎"), ("Japan", "Tokyo", "日本", "东京"), ("Italy", "Rome", "意大利", "罗马"),
    ("Germany", "Berlin", "德国", "柏林"), ("Spain", "Madrid", "西班牙", "马德里"),
    ("Egypt", "Cairo", "埃及", "开罗"), ("Russia", "Moscow", "俄罗斯", "莫斯科"),
    ("China", "Beijing", "中国", "北京"), ("Canada", "Ottawa", "加拿大", "渥太华"),
    ("Kenya", "Nairobi", "肯尼亚", "内罗毕"), ("Peru", "Lima", "秘鲁", "利马"),
    ("Greece", "Athens", "希腊", "雅典"),
]  # fmt: skip
PHRASES = [
    ("good morning", "早上好"), ("thank you", "谢谢"), ("see you tomorrow", "明天见"), ("happy birthday", "生日快乐"),
    ("I like tea", "我喜欢茶"), ("the sky is blue", "天空是蓝色的"), ("where is the station", "车站在哪里"),
    ("it is raining", "正在下雨"), ("good night", "晚安"), ("welcome home", "欢迎回家"),
]  # fmt: skip
SENTENCES = [
    ("I love this book.", "positive", "我很喜欢这本书。", "正面"),
    ("The food was terrible.", "negative", "这顿饭太难吃了。", "负面"),
    ("What a wonderful day!", "positive", "今天天气真好！", "正面"),
    ("The movie was boring.", "negative", "这部电影很无聊。", "负面"),
    ("My new phone works great.", "positive", "我的新手机很好用。", "正面"),
    ("The train was late again.", "negative", "火车又晚点了。", "负面"),
]
WORDS = ["apple river stone", "blue green red", "one two three", "cat sat mat", "sun moon star", "fast slow"]
UNITS = [
    ("km", "m", 1000, "千米", "米"),
    ("kg", "g", 1000, "千克", "克"),
    ("hours", "minutes", 60, "小时", "分钟"),
]
OPS = [("+", "加", lambda a, b: a + b), ("-", "减", lambda a, b: a - b), ("*", "乘以", lambda a, b: a * b)]


def alpaca_rows(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for i in range(200):
        kind, zh = i % 6, (i // 6) % 2 == 1
        if kind == 0:
            a, b = rng.randint(2, 49), rng.randint(2, 49)
            sym, word, fn = OPS[rng.randrange(3)]
            row = (("计算：", f"{a}{word}{b}", f"{a}{word}{b}等于{fn(a, b)}。") if zh else
                   ("Calculate:", f"{a} {sym} {b}", f"{a} {sym} {b} = {fn(a, b)}"))  # fmt: skip
        elif kind == 1:
            en, cap, zh_c, zh_cap = rng.choice(CAPITALS)
            row = (f"{zh_c}的首都是哪里？", "", f"{zh_c}的首都是{zh_cap}。") if zh else (
                f"What is the capital of {en}?", "", f"The capital of {en} is {cap}.")  # fmt: skip
        elif kind == 2:
            en, zh_p = rng.choice(PHRASES)
            row = ("把下面的英文翻译成中文。", en, zh_p) if zh else ("Translate into English.", zh_p, en)
        elif kind == 3:
            big, small, factor, zh_big, zh_small = rng.choice(UNITS)
            n = rng.randint(2, 12)
            row = (f"把{n}{zh_big}换算成{zh_small}。", "", f"{n}{zh_big}等于{n * factor}{zh_small}。") if zh else (
                f"Convert {n} {big} to {small}.", "", f"{n} {big} = {n * factor} {small}.")  # fmt: skip
        elif kind == 4:
            words = rng.choice(WORDS)
            rev = " ".join(reversed(words.split()))
            row = (
                ("把下面的单词顺序倒过来。", words, rev)
                if zh
                else ("Reverse the order of the words.", words, rev)
            )
        else:
            en, label, zh_s, zh_label = rng.choice(SENTENCES)
            row = ("判断这句话的情感是正面还是负面。", zh_s, zh_label) if zh else (
                "Is the sentiment of this sentence positive or negative?", en, label)  # fmt: skip
        rows.append(dict(zip(("instruction", "input", "output"), row)))
    return rows


def sharegpt_rows(rng: random.Random) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i in range(50):
        a, b, c = rng.randint(2, 20), rng.randint(2, 20), rng.randint(2, 5)
        en, cap, zh_c, zh_cap = CAPITALS[i % len(CAPITALS)]
        if i % 2 == 0:
            turns = [("human", f"What is {a} + {b}?"), ("gpt", f"{a} + {b} = {a + b}"),
                     ("human", f"And times {c}?"), ("gpt", f"{a + b} * {c} = {(a + b) * c}")]  # fmt: skip
            if i % 4 == 0:
                turns += [
                    ("human", f"What is the capital of {en}?"),
                    ("gpt", f"The capital of {en} is {cap}."),
                ]
            system = "You are a concise assistant."
        else:
            turns = [("human", f"{a}加{b}等于多少？"), ("gpt", f"{a}加{b}等于{a + b}。"),
                     ("human", f"再乘以{c}呢？"), ("gpt", f"{a + b}乘以{c}等于{(a + b) * c}。")]  # fmt: skip
            if i % 4 == 1:
                turns += [("human", f"{zh_c}的首都是哪里？"), ("gpt", f"{zh_c}的首都是{zh_cap}。")]
            system = "你是一个简洁的助手。"
        if i % 10 == 9:  # a tool call and its result, kept as assistant and tool messages
            x, y = a * 17, b * 13
            call = json.dumps({"name": "calculator", "arguments": {"expression": f"{x} * {y}"}})
            turns = [("human", f"Use the calculator: {x} * {y}"), ("function_call", call),
                     ("observation", str(x * y)), ("gpt", f"{x} * {y} = {x * y}")]  # fmt: skip
            system = "You are a concise assistant with a calculator tool."
        convo = [{"from": who, "value": value} for who, value in turns]
        rows.append({"id": f"chat-{i:03d}", "system": system, "conversations": convo})
    return rows


def explain_rows(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for i in range(50):
        a, b = rng.randint(11, 99), rng.randint(2, 9)
        tens, ones = a // 10 * 10, a % 10
        if i % 2 == 0:
            steps = (
                f"{tens} * {b} = {tens * b}, {ones} * {b} = {ones * b}, {tens * b} + {ones * b} = {a * b}."
            )
            rows.append(
                {
                    "instruction": "Calculate:",
                    "input": f"{a} * {b}",
                    "explain": steps,
                    "output": f"{a} * {b} = {a * b}",
                }
            )
        else:
            steps = f"{tens}乘以{b}得{tens * b}，{ones}乘以{b}得{ones * b}，相加得{a * b}。"
            rows.append(
                {
                    "instruction": "计算：",
                    "input": f"{a}乘以{b}",
                    "explain": steps,
                    "output": f"{a}乘以{b}得{a * b}。",
                }
            )
    return rows


def write_all(out: Path) -> list[Path]:
    """Write the three example files into ``out`` and return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "alpaca_bilingual.json": alpaca_rows(random.Random(1)),
        "multiturn_sharegpt.json": sharegpt_rows(random.Random(2)),
        "explain.json": explain_rows(random.Random(3)),
    }
    paths = []
    for name, rows in files.items():
        path = out / name
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    for p in write_all(parser.parse_args().out):
        print(f"wrote {p} ({p.stat().st_size} bytes)")
