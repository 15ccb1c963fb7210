// Test certificates made with openssl at test time in a temp dir (no key is ever committed): a self-signed
// server certificate, a private CA with a leaf it signed, and a leaf of that CA that expired in 2020, each
// naming localhost and 127.0.0.1; and a self-signed one naming only other.example.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCerts {
  dir: string;
  /** Self-signed: its own CA. */
  self: { cert: string; key: string };
  /** Self-signed for other.example only: wrong for every address we dial. */
  other: { cert: string; key: string };
  /** The private CA that signed `leaf` and `expired`. */
  ca: string;
  leaf: { cert: string; key: string };
  expired: { cert: string; key: string };
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  const r = Bun.spawnSync(["openssl", ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${r.stderr.toString()}`);
}

export function makeCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), "wsm-certs-"));
  const san = "subjectAltName=DNS:localhost,IP:127.0.0.1";
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(["req", "-x509", ...ec, "-keyout", "self.key", "-out", "self.crt", "-days", "2", "-subj", "/CN=localhost", "-addext", san], dir);
  openssl(["req", "-x509", ...ec, "-keyout", "other.key", "-out", "other.crt", "-days", "2", "-subj", "/CN=other.example", "-addext", "subjectAltName=DNS:other.example"], dir);
  openssl(["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=wsmillion test CA"], dir);
  openssl(["req", ...ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost", "-addext", san], dir);
  writeFileSync(join(dir, "san.cnf"), `${san}\n`);
  openssl(["x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "leaf.crt", "-days", "2", "-extfile", "san.cnf"], dir);
  // `openssl x509` cannot date a certificate in the past; `openssl ca` can.
  writeFileSync(join(dir, "index.txt"), "");
  writeFileSync(join(dir, "serial"), "1000\n");
  writeFileSync(
    join(dir, "ca.cnf"),
    "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nserial=serial\nnew_certs_dir=.\ndefault_md=sha256\npolicy=p\ncopy_extensions=copy\nunique_subject=no\n[p]\ncommonName=supplied\n",
  );
  openssl(["ca", "-batch", "-config", "ca.cnf", "-cert", "ca.crt", "-keyfile", "ca.key", "-in", "leaf.csr", "-out", "expired.crt", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-notext"], dir);
  const p = (f: string): string => join(dir, f);
  return {
    dir,
    self: { cert: p("self.crt"), key: p("self.key") },
    other: { cert: p("other.crt"), key: p("other.key") },
    ca: p("ca.crt"),
    leaf: { cert: p("leaf.crt"), key: p("leaf.key") },
    expired: { cert: p("expired.crt"), key: p("leaf.key") },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
