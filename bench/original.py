"""The original way, for the baseline: shared/seed/writer_single.py re-created, one spec per process.

Same structure as the seed script: configuration from the environment, a fresh MCP session per
run, every tool the server lists offered to the model, no repository context in the prompt (the
model fetches `doc/convention.md` and the tree through tool calls), one streamed completion per
round, tool calls executed one after another, the raw answer written to the output file.

Fixed just enough to run against mcp 2.x and a strict OpenAI-compatible server:
- the mcp 2.x client (`Client(streamable_http_client(url))`, `input_schema`) replaces the
  ClientSession juggling;
- the assistant message carries its `tool_calls` (the seed sent it without them, which real
  providers and the scripted model reject);
- a JSON-RPC error of a tool call comes back to the model as text instead of ending the run;
- a stream chunk without choices (the usage chunk) is skipped instead of raising IndexError;
- tool results are the joined text blocks: the seed sent `json.dumps` of the block list, whose
  escaped newlines the scripted model (and a careful reader) cannot parse as a file.

Run: `SPEC_JSON_PATH=spec.json OUTPUT_DIR=out python -m bench.original` (plus the OPENAI_* and
GITLAB_* variables of the seed).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from openai import AsyncOpenAI

WRITER_SYSTEM = """
Tu es IA2 (WRITER). Ton job: générer un fichier Robot Framework .robot conforme au framework existant dans GitLab.

Règles obligatoires:
1) Lire d'abord le fichier "doc/convention.md" via GitLab MCP (OBLIGATOIRE).
2) Explorer le repo (tree + exemples) pour trouver un test similaire et les resources/variables utilisées.
3) Réutiliser les keywords existants du framework quand possible (ne pas réinventer).
4) Générer le contenu final du fichier .robot (PAS de markdown), prêt à être écrit en local.
5) Read-only: PAS de commit/push.

Aides:
- Si tu as besoin du project_id ou ref et qu'ils ne sont pas inclus, demande au toolset (search_repositories / get_project / get_repository_tree) ou utilise les variables fournies.
- Ne sors que le contenu final du .robot (texte brut).
""".strip()

MAX_ROUNDS = 18
TEMPERATURE = 0.1


def _print_stream(prefix: str, text: str) -> None:
    print(f"{prefix}{text}", end="", flush=True)


def tools_to_openai(tools: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description or "",
                "parameters": dict(tool.input_schema or {})
                or {"type": "object", "properties": {}, "additionalProperties": True},
            },
        }
        for tool in tools
    ]


async def chat_with_tools_streaming(
    client: AsyncOpenAI,
    model: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    tool_executor: Any,
) -> str:
    final_text = ""
    for round_idx in range(1, MAX_ROUNDS + 1):
        _print_stream("[WRITER] ", f"\n--- round {round_idx} ---\n")
        stream = await client.chat.completions.create(
            model=model,
            messages=messages,
            tools=tools,
            tool_choice="auto",
            stream=True,
            temperature=TEMPERATURE,
        )  # type: ignore[call-overload]
        text_parts: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        async for chunk in stream:
            if not chunk.choices:  # fix: the usage chunk has no choices
                continue
            delta = chunk.choices[0].delta
            if delta and delta.content:
                text_parts.append(delta.content)
                _print_stream("[WRITER] ", delta.content)
            for tc in (delta.tool_calls if delta else None) or []:
                acc = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                acc["id"] = tc.id or acc["id"]
                if tc.function is not None:
                    acc["name"] = tc.function.name or acc["name"]
                    acc["arguments"] += tc.function.arguments or ""
        assistant_text = "".join(text_parts).strip()
        if assistant_text:
            final_text = assistant_text
        if not calls:
            return final_text
        ordered = [calls[index] for index in sorted(calls)]
        for tc in ordered:
            tc["id"] = tc["id"] or f"toolcall-{tc['name']}"
        # fix: the assistant message carries its tool calls
        messages.append({
            "role": "assistant",
            "content": assistant_text or "",
            "tool_calls": [{"id": tc["id"], "type": "function",
                            "function": {"name": tc["name"], "arguments": tc["arguments"] or "{}"}} for tc in ordered],
        })  # fmt: skip
        for tc in ordered:  # sequentially, as the seed did
            try:
                args = json.loads(tc["arguments"]) if tc["arguments"].strip() else {}
            except ValueError:
                args = {"_raw": tc["arguments"]}
            _print_stream("[WRITER] ", f"\n[TOOL_CALL] {tc['name']} args={args}\n")
            result = await tool_executor(tc["name"], args)
            messages.append({"role": "tool", "tool_call_id": tc["id"], "name": tc["name"], "content": result})
    return final_text


def choose_output_path(spec: dict[str, Any], output_dir: Path) -> Path:
    rf = spec.get("rf", {})
    target = rf.get("target_path") or rf.get("output_path") or "tests/generated/generated_from_spec.robot"
    return output_dir / Path(str(target)).as_posix().lstrip("/")


async def main(spec: dict[str, Any], output_dir: Path) -> None:
    api_key = os.environ["OPENAI_API_KEY"].strip()
    base_url = os.environ.get("OPENAI_BASE_URL", "").strip() or None
    model = os.environ.get("OPENAI_MODEL_WRITER", "magistral-2509").strip()
    mcp_url = os.environ["GITLAB_MCP_URL"].strip()
    project_id = os.environ.get("GITLAB_PROJECT_ID", "").strip()
    ref = os.environ.get("GITLAB_REF", "").strip() or None
    client = AsyncOpenAI(api_key=api_key, base_url=base_url)

    async with Client(streamable_http_client(mcp_url)) as mcp:
        tools = (await mcp.list_tools()).tools
        tools_map = {tool.name: set((tool.input_schema or {}).get("properties", {}) or {}) for tool in tools}

        async def exec_tool(name: str, args: dict[str, Any]) -> str:
            if project_id:
                for key in ("project_id", "projectId", "project"):
                    if key in tools_map.get(name, set()) and key not in args:
                        args[key] = project_id
            if ref:
                for key in ("ref", "branch", "branch_name"):
                    if key in tools_map.get(name, set()) and key not in args:
                        args[key] = ref
            try:
                result = await mcp.call_tool(name, args)
            except MCPError as exc:  # fix: a tool error is text for the model
                return f"Error: {exc.message}"
            return "\n".join(getattr(block, "text", "") for block in result.content)

        writer_user = (
            "Tu vas générer un fichier Robot Framework à partir de cette SPEC JSON.\n\n"
            f"SPEC_JSON:\n{json.dumps(spec, ensure_ascii=False, indent=2)}\n\n"
            "Contraintes OBLIGATOIRES:\n"
            "1) Appelle get_file_contents sur 'doc/convention.md' EN PREMIER.\n"
            "2) Ensuite explore le repo pour retrouver ressources/tests similaires.\n"
            "3) Puis génère le contenu final .robot (texte brut uniquement).\n\n"
            "Infos techniques:\n"
            f"- project_id (si nécessaire): {project_id or 'NON FOURNI'}\n"
            f"- ref/branch (si nécessaire): {ref or 'NON FOURNI'}\n"
        )
        messages = [{"role": "system", "content": WRITER_SYSTEM}, {"role": "user", "content": writer_user}]
        robot_text = await chat_with_tools_streaming(
            client, model, messages, tools_to_openai(tools), exec_tool
        )

    robot_text = robot_text.strip()
    if not robot_text:
        raise RuntimeError("Le modèle n'a produit aucun contenu Robot Framework.")
    out_path = choose_output_path(spec, output_dir)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(robot_text + "\n", encoding="utf-8")
    print(f"\n[OK] Robot généré en local: {out_path}")


def load_spec_json() -> dict[str, Any]:
    return json.loads(Path(os.environ["SPEC_JSON_PATH"]).read_text(encoding="utf-8"))


if __name__ == "__main__":
    asyncio.run(main(load_spec_json(), Path(os.environ.get("OUTPUT_DIR", "./generated")).resolve()))
