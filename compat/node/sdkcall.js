// Helpers the Node compatibility tests share: they run an SDK call and, when
// it fails, fail the test with the HTTP exchange behind it (what was sent and
// what the hub answered), which says more than a stack trace would.
'use strict';

// exchange describes the HTTP exchange behind an SDK error: what was sent and
// what the hub answered, so a failure says exactly what went wrong.
function exchange(err) {
  if (!err || typeof err !== 'object') return String(err);
  const res = err.response;
  const lines = [`${err.name || err.constructor?.name}: ${err.message}`];
  if (res) {
    const req = res.req;
    if (req) {
      lines.push(`request:  ${req.method} ${req.path}`);
      const h = req.getHeaders ? req.getHeaders() : {};
      for (const [k, v] of Object.entries(h)) {
        lines.push(`  ${k}: ${k === 'authorization' ? String(v).replace(/sig=[^&]*/, 'sig=…') : v}`);
      }
    }
    lines.push(`response: ${res.statusCode} ${res.statusMessage}`);
    for (const [k, v] of Object.entries(res.headers || {})) lines.push(`  ${k}: ${v}`);
    lines.push(`  body: ${err.responseBody}`);
  } else if (err.code) {
    lines.push(`(no HTTP response; code ${err.code})`);
  }
  return lines.join('\n');
}

// fail fails the test with message alone: the HTTP exchange in it says more
// than a stack trace would.
function fail(message) {
  const err = new Error(message);
  err.stack = message;
  throw err;
}

// call runs an SDK call and, when it fails, fails with the HTTP exchange.
async function call(what, promise) {
  try {
    return await promise;
  } catch (err) {
    fail(`${what} failed:\n${exchange(err)}`);
  }
}

// rejects expects an SDK call to fail and returns its error.
async function rejects(what, promise) {
  let result;
  try {
    result = await promise;
  } catch (err) {
    return err;
  }
  fail(`${what} succeeded but should have failed; status ${result?.httpResponse?.statusCode}, body ${JSON.stringify(result?.responseBody)}`);
}

module.exports = { exchange, fail, call, rejects };
