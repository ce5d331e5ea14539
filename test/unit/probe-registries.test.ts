import { test } from "node:test";
import assert from "node:assert/strict";
import { replayIO } from "../../src/probe/io.js";
import {
  classifyCurl,
  configuredMirrors,
  curlArgv,
  noProxyMatch,
  normaliseProxy,
  probeRegistries,
  proxyFor,
} from "../../src/probe/registries.js";
import { loadTranscript, RECORDED_DIRECT_ENV, RECORDED_PROXY_ENV } from "./net-fixtures.js";

test("NO_PROXY entries match the way Go's httpproxy matches them", () => {
  // Cases from golang.org/x/net/http/httpproxy's useProxy rules.
  const cases: [string, string, string, string | null][] = [
    ["*", "registry.k8s.io", "443", "*"],
    ["foo.com", "foo.com", "443", "foo.com"],
    ["foo.com", "bar.foo.com", "443", "foo.com"],
    ["foo.com", "barfoo.com", "443", null],
    [".foo.com", "foo.com", "443", null],
    [".foo.com", "x.foo.com", "443", ".foo.com"],
    ["*.foo.com", "x.foo.com", "443", "*.foo.com"],
    ["*.foo.com", "foo.com", "443", null],
    ["foo.com:443", "foo.com", "443", "foo.com:443"],
    ["foo.com:80", "foo.com", "443", null],
    ["10.0.0.0/8", "10.1.2.3", "443", "10.0.0.0/8"],
    ["10.0.0.0/8", "11.1.2.3", "443", null],
    ["10.0.0.0/8", "ten.example", "443", null],
    ["192.168.1.1", "192.168.1.1", "443", "192.168.1.1"],
    ["192.168.1.1:5000", "192.168.1.1", "443", null],
    ["fd00::/8", "fd00::1", "443", "fd00::/8"],
    ["[::2]:443", "::2", "443", "[::2]:443"],
    [" Quay.IO , ghcr.io", "quay.io", "443", "Quay.IO"],
    ["", "quay.io", "443", null],
  ];
  for (const [noProxy, host, port, expected] of cases) {
    assert.equal(noProxyMatch(noProxy, host, port), expected, `${noProxy} vs ${host}:${port}`);
  }
});

test("the proxy for a registry follows Go: upper case first, loopback never, NO_PROXY exempts", () => {
  const url = new URL("https://registry.k8s.io/v2/");
  assert.deepEqual(proxyFor(url, {}), {
    proxy: null,
    reason: "no HTTPS_PROXY or https_proxy set",
  });
  assert.deepEqual(proxyFor(url, { HTTPS_PROXY: "http://a:3128", https_proxy: "http://b:3128" }), {
    proxy: "http://a:3128",
    source: "HTTPS_PROXY",
  });
  assert.deepEqual(proxyFor(url, { https_proxy: "b:3128" }), {
    proxy: "http://b:3128",
    source: "https_proxy",
  });
  // Go never falls back to HTTP_PROXY for https; curl's ALL_PROXY is not Go's either.
  assert.equal(proxyFor(url, { HTTP_PROXY: "http://a:3128", ALL_PROXY: "http://c" }).proxy, null);
  assert.deepEqual(proxyFor(url, { HTTPS_PROXY: "http://a:3128", no_proxy: "k8s.io" }), {
    proxy: null,
    reason: 'no_proxy entry "k8s.io"',
  });
  assert.deepEqual(
    proxyFor(url, { HTTPS_PROXY: "http://a:3128", NO_PROXY: "quay.io", no_proxy: "k8s.io" }),
    { proxy: "http://a:3128", source: "HTTPS_PROXY" },
    "a non-empty NO_PROXY hides no_proxy",
  );
  assert.deepEqual(proxyFor(new URL("http://127.0.0.1:5000/v2/"), { HTTP_PROXY: "a:1" }), {
    proxy: null,
    reason: "127.0.0.1 is loopback, which Go never proxies",
  });
  assert.equal(normaliseProxy("socks5://p:1080"), "socks5://p:1080");
});

test("curl gets the proxy decision in argv, so the transcript shows what was used", () => {
  const argv = curlArgv("https://quay.io/v2/", { proxy: "http://p:3128", source: "HTTPS_PROXY" });
  assert.deepEqual(argv.slice(-3), ["--proxy", "http://p:3128", "https://quay.io/v2/"]);
  assert.deepEqual(curlArgv("https://quay.io/v2/", { proxy: null, reason: "" }).slice(-3), [
    "--noproxy",
    "*",
    "https://quay.io/v2/",
  ]);
});

test("curl's outcomes map to what went wrong", () => {
  assert.deepEqual(classifyCurl(0, "401", "", undefined, false), {
    reachable: true,
    httpStatus: 401,
  });
  assert.deepEqual(classifyCurl(0, "403", "", undefined, false), {
    reachable: false,
    kind: "http-status",
    error: "HTTP 403 from /v2/",
    httpStatus: 403,
  });
  assert.deepEqual(
    classifyCurl(6, "000", "curl: (6) Could not resolve host: quay.io\n", undefined, false),
    {
      reachable: false,
      kind: "dns",
      error: "Could not resolve host: quay.io",
    },
  );
  const refusedProxy =
    "curl: (7) Failed to connect to 127.0.0.1 port 9 after 0 ms: Couldn't connect to server\n";
  assert.equal(classifyCurl(7, "000", refusedProxy, undefined, true).reachable, false);
  assert.equal(
    (classifyCurl(7, "000", refusedProxy, undefined, true) as { kind: string }).kind,
    "proxy",
  );
  assert.equal(
    (classifyCurl(7, "000", refusedProxy, undefined, false) as { kind: string }).kind,
    "connect",
  );
  assert.equal(
    (
      classifyCurl(5, "000", "curl: (5) Could not resolve proxy: p\n", undefined, true) as {
        kind: string;
      }
    ).kind,
    "proxy-dns",
  );
  assert.equal(
    (
      classifyCurl(28, "000", "curl: (28) Connection timed out\n", undefined, false) as {
        kind: string;
      }
    ).kind,
    "timeout",
  );
  assert.equal(
    (
      classifyCurl(
        56,
        "000",
        "curl: (56) CONNECT tunnel failed, response 403\n",
        undefined,
        true,
      ) as { kind: string }
    ).kind,
    "proxy",
  );
  // exit 60 is followed by several lines of advice; only curl's own error line is kept.
  assert.deepEqual(
    classifyCurl(
      60,
      "000",
      "curl: (60) SSL: no alternative certificate subject name matches target host name 'x'\nMore details here: https://curl.se/docs/sslcerts.html\n",
      undefined,
      false,
    ),
    {
      reachable: false,
      kind: "tls",
      error: "SSL: no alternative certificate subject name matches target host name 'x'",
    },
  );
  assert.deepEqual(classifyCurl(137, "", "", "TIMEOUT", false), {
    reachable: false,
    kind: "timeout",
    error: "curl timed out",
  });
});

test("mirrors come from SANDKUBE_REGISTRY_MIRRORS, probed at their /v2/ endpoint", () => {
  assert.deepEqual(configuredMirrors({}), []);
  assert.deepEqual(
    configuredMirrors({
      SANDKUBE_REGISTRY_MIRRORS:
        "mirror.example.com:5000, http://127.0.0.1:5000/v2/,https://m.example/cache",
    }),
    [
      { name: "mirror.example.com:5000", url: "https://mirror.example.com:5000/v2/" },
      { name: "127.0.0.1:5000", url: "http://127.0.0.1:5000/v2/" },
      { name: "m.example", url: "https://m.example/cache/v2/" },
    ],
  );
  assert.throws(
    () => configuredMirrors({ SANDKUBE_REGISTRY_MIRRORS: "http://[bad" }),
    /SANDKUBE_REGISTRY_MIRRORS: "http:\/\/\[bad" is not a URL/,
  );
});

test("the recorded host has no route to any registry, and says which proxy each one used", async () => {
  const io = replayIO(await loadTranscript("net-host-kernel"));
  const direct = await probeRegistries(io, RECORDED_DIRECT_ENV);
  assert.deepEqual(
    direct.registries.map((r) => [r.name, r.result.reachable ? "up" : r.result.kind]),
    [
      ["registry.k8s.io", "dns"],
      ["docker.io", "dns"],
      ["ghcr.io", "dns"],
      ["quay.io", "dns"],
    ],
  );
  const proxied = await probeRegistries(io, RECORDED_PROXY_ENV);
  assert.deepEqual(
    proxied.registries.map((r) => [
      r.name,
      r.mirror,
      r.proxy,
      r.result.reachable ? "up" : r.result.kind,
    ]),
    [
      ["registry.k8s.io", false, { proxy: "http://127.0.0.1:9", source: "HTTPS_PROXY" }, "proxy"],
      ["docker.io", false, { proxy: "http://127.0.0.1:9", source: "HTTPS_PROXY" }, "proxy"],
      ["ghcr.io", false, { proxy: "http://127.0.0.1:9", source: "HTTPS_PROXY" }, "proxy"],
      ["quay.io", false, { proxy: null, reason: 'NO_PROXY entry "quay.io"' }, "dns"],
      [
        "127.0.0.1:9",
        true,
        { proxy: null, reason: "127.0.0.1 is loopback, which Go never proxies" },
        "connect",
      ],
    ],
  );
});

test("inside gVisor with --network=none every registry fails at DNS", async () => {
  const facts = await probeRegistries(
    replayIO(await loadTranscript("net-gvisor")),
    RECORDED_DIRECT_ENV,
  );
  assert.ok(facts.registries.every((r) => !r.result.reachable && r.result.kind === "dns"));
});
