#!/usr/bin/env python3
"""The official OpenAI Python client against `paligemma serve`, unchanged: chat completions
(plain and streamed, with usage), text completions (the image in extra_body), the model list,
and the client's typed errors for a bad key and a bad request. Prints one JSON object that the
Swift test (Tests/PaliGemmaServerTests/CLIServeTests.swift) checks.

    python3 scripts/openai_client_check.py BASE_URL API_KEY IMAGE.png

Needs `pip install openai` (CI installs openai==3.57.0 into .build/openai-venv).
"""
import base64
import json
import sys

import openai
from openai import OpenAI

base, key, image = sys.argv[1], sys.argv[2], sys.argv[3]
url = "data:image/png;base64," + base64.b64encode(open(image, "rb").read()).decode()
client = OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
messages = [{"role": "user", "content": [
    {"type": "text", "text": "answer en how many shapes are there?"},
    {"type": "image_url", "image_url": {"url": url}},
]}]

out = {"openai_version": openai.__version__}
chat = client.chat.completions.create(model="shapes-tiny", messages=messages, max_tokens=8, temperature=0)
out["chat"] = chat.choices[0].message.content
out["chat_finish_reason"] = chat.choices[0].finish_reason
out["chat_usage"] = [chat.usage.prompt_tokens, chat.usage.completion_tokens, chat.usage.total_tokens]

pieces, usage = [], None
for chunk in client.chat.completions.create(model="shapes-tiny", messages=messages, max_tokens=8, stream=True,
                                            stream_options={"include_usage": True}):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = [chunk.usage.prompt_tokens, chunk.usage.completion_tokens, chunk.usage.total_tokens]
out["stream"] = "".join(pieces)
out["stream_usage"] = usage

completion = client.completions.create(model="shapes-tiny", prompt="caption en", max_tokens=32, extra_body={"image": url})
out["completion"] = completion.choices[0].text
out["models"] = [m.id for m in client.models.list().data]

try:
    OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0).models.list()
    out["bad_key"] = "accepted"
except openai.AuthenticationError as e:
    out["bad_key"] = e.status_code
try:
    client.chat.completions.create(model="shapes-tiny", messages=[{"role": "user", "content": "no image"}], max_tokens=4)
    out["bad_request"] = "accepted"
except openai.BadRequestError as e:
    out["bad_request"] = [e.status_code, e.body.get("code") if isinstance(e.body, dict) else None]
print(json.dumps(out))
