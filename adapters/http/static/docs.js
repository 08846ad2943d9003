// Renders /openapi.json as a list of operations with their parameters, request body
// and responses. No framework and no network access beyond this server.
"use strict";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

function resolve(doc, schema) {
  const ref = schema && schema.$ref;
  return ref ? doc.components.schemas[ref.split("/").pop()] : schema;
}

function schemaBlock(doc, schema) {
  const s = resolve(doc, schema);
  const name = schema && schema.$ref ? schema.$ref.split("/").pop() + " " : "";
  return el("pre", {}, name + JSON.stringify(s, null, 2));
}

// Operations answer JSON, CSV, XES or an event stream: show the first media type's schema.
function firstSchema(content) {
  const first = Object.values(content)[0];
  return first && first.schema ? first.schema : {};
}

async function main() {
  const doc = await (await fetch("/openapi.json")).json();
  const ops = document.getElementById("ops");
  ops.textContent = "";
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const body = el("div", {});
      const params = op.parameters || [];
      if (params.length) {
        const t = el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"),
          el("th", {}, "description")));
        for (const p of params) {
          t.append(el("tr", {}, el("td", {}, p.name), el("td", {}, p.in),
            el("td", {}, p.description || "")));
        }
        body.append(t);
      }
      if (op.requestBody) {
        body.append(el("h4", {}, "Request body"),
          schemaBlock(doc, firstSchema(op.requestBody.content)));
      }
      for (const [status, r] of Object.entries(op.responses)) {
        body.append(el("h4", {}, `${status} ${r.description}`));
        if (r.content) body.append(schemaBlock(doc, firstSchema(r.content)));
      }
      ops.append(el("details", { class: "op" },
        el("summary", {}, el("span", { class: "method " + method }, method.toUpperCase()),
          el("span", { class: "path" }, path), " — " + (op.summary || "")),
        body));
    }
  }
}

main().catch((err) => {
  document.getElementById("ops").textContent = "Could not load /openapi.json: " + err;
});
