#!/usr/bin/env python3
"""Checks `gpt2 serve` with OpenAI's own Python client, unchanged: list the models, one completion,
one streamed completion, and an error the client should raise.

    python3 -m venv /tmp/oai && /tmp/oai/bin/pip install openai
    /tmp/oai/bin/python scripts/serve_openai_client.py --base-url http://127.0.0.1:8080/v1
"""

import argparse
import sys

import openai


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    args = ap.parse_args()
    # the server does not check keys; the client insists on having one
    client = openai.OpenAI(base_url=args.base_url, api_key="unused")

    models = client.models.list()
    model = models.data[0].id
    print(f"openai {openai.__version__}; models: {[m.id for m in models.data]}")

    c = client.completions.create(model=model, prompt="ROMEO:", max_tokens=24, temperature=0.8, seed=1)
    print(f"completion: {c.choices[0].text!r}")
    print(f"  finish_reason={c.choices[0].finish_reason} usage={c.usage.prompt_tokens}+{c.usage.completion_tokens}={c.usage.total_tokens}")

    pieces = []
    for chunk in client.completions.create(model=model, prompt="JULIET:", max_tokens=24, stream=True, seed=2):
        if chunk.choices and chunk.choices[0].text:
            pieces.append(chunk.choices[0].text)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    print(f"stream: {len(pieces)} chunks, finish_reason={finish}: {''.join(pieces)!r}")

    try:
        client.completions.create(model=model, prompt="x", max_tokens=0)
        print("error: max_tokens=0 was accepted")
        sys.exit(1)
    except openai.BadRequestError as e:
        print(f"max_tokens=0 -> {type(e).__name__} {e.status_code}: {e.body['message']}")


if __name__ == "__main__":
    main()
