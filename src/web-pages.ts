// Builds the self-contained pages (the dashboard, the sweep report): a template from web/ with uPlot, the
// shared chart helpers and any data written into it, so a page needs no network and no second request.
// A leaf beside flags.ts and format.ts, not part of report/: the server serves the dashboard and report/
// writes the sweep report, and imports point down, so what both use sits below both.
import { readFileSync } from "node:fs";
import { join } from "node:path";

const WEB = join(import.meta.dir, "..", "web");

function uplotFile(name: string): string {
  return readFileSync(Bun.resolveSync(`uplot/dist/${name}`, import.meta.dir), "utf8");
}

/** Text placed inside <script> or <style> must not close the element early. */
function guard(kind: "script" | "style", text: string): string {
  return text.replace(kind === "script" ? /<\/script/gi : /<\/style/gi, kind === "script" ? "<\\/script" : "<\\/style");
}

/** JSON for a <script type="application/json"> block: `<` escaped, so no string in it can end the block. */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c").replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}

/**
 * Replaces each `/*@name*\/` marker in `template`. Split and join rather than String.replace, whose
 * replacement strings treat `$&` and friends specially (minified code is full of `$`).
 */
export function fillTemplate(template: string, parts: Record<string, string>): string {
  let out = template;
  for (const [name, text] of Object.entries(parts)) {
    const marker = `/*@${name}*/`;
    if (!out.includes(marker)) throw new Error(`page template lacks the ${marker} marker`);
    out = out.split(marker).join(text);
  }
  return out;
}

/** A web/ template with uPlot (script and CSS) and web/charts.js inlined, plus the page's own parts. */
export function buildPage(file: string, parts: Record<string, string> = {}): string {
  return fillTemplate(readFileSync(join(WEB, file), "utf8"), {
    "uplot.css": guard("style", uplotFile("uPlot.min.css")),
    "uplot.js": guard("script", uplotFile("uPlot.iife.min.js")),
    "charts.js": guard("script", readFileSync(join(WEB, "charts.js"), "utf8")),
    ...parts,
  });
}
