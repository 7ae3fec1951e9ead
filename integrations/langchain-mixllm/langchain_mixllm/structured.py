"""``with_structured_output(method="json_schema" | "json_mode")`` for ``ChatMixLLM``.

OpenAI-compatible chat models take the JSON schema (or JSON mode) as ``response_format`` on the
request; other providers have their own spellings or none. So the call carries ``response_format``
as a call keyword, ``ChatMixLLM`` routes it only among candidates that take it
(:func:`takes_response_format`), and the chosen one's JSON answer is parsed here: into the
pydantic class when ``schema`` is one, else into a dict.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_openai_function
from langchain_core.utils.pydantic import is_basemodel_subclass

__all__ = ["json_structured_output", "response_format", "takes_response_format"]


def takes_response_format(model: BaseChatModel | None) -> bool:
    """Whether a candidate's chat model sends ``response_format`` to its provider (langchain-openai's
    chat models, and their subclasses for OpenAI-compatible servers)."""
    if model is None:
        return False
    try:
        from langchain_openai.chat_models.base import BaseChatOpenAI
    except ImportError:  # pragma: no cover - langchain-openai not installed
        return False
    return isinstance(model, BaseChatOpenAI)


def response_format(schema: dict[str, Any] | type | None, method: str, strict: bool | None) -> dict[str, Any]:
    """OpenAI's ``response_format`` for a schema: ``json_schema`` with name, schema and strict, or
    ``{"type": "json_object"}`` for JSON mode."""
    if method == "json_mode":
        return {"type": "json_object"}
    if isinstance(schema, dict) and schema.get("type") == "json_schema" and "json_schema" in schema:
        return schema
    function = convert_to_openai_function(schema, strict=bool(strict))  # type: ignore[arg-type]
    spec = {"name": function["name"], "schema": function["parameters"]}
    if function.get("description"):
        spec["description"] = function["description"]
    if strict is not None:
        spec["strict"] = strict
    return {"type": "json_schema", "json_schema": spec}


def json_structured_output(llm: BaseChatModel, schema: dict[str, Any] | type | None, *, method: str,
                           strict: bool | None, include_raw: bool) -> Runnable[Any, Any]:
    """``llm`` bound to ``response_format``, then a parser of its JSON answer."""
    bound = llm.bind(response_format=response_format(schema, method, strict),
                     ls_structured_output_format={"kwargs": {"method": method, "strict": strict}, "schema": schema})
    parser: Runnable[Any, Any]
    if isinstance(schema, type) and is_basemodel_subclass(schema):
        parser = PydanticOutputParser(pydantic_object=schema)
    else:
        parser = JsonOutputParser()
    if not include_raw:
        return bound | parser
    parse = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
    keep = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=bound) | parse.with_fallbacks([keep], exception_key="parsing_error")
