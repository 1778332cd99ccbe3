// t/clients/load.mjs - import an npm package from the test-only install in
// build/npm (QWEN_NPM_DIR) by its ESM entry, so the clients run exactly as
// published, without copying or patching them.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export async function load(name) {
    const dir = join(process.env.QWEN_NPM_DIR || 'build/npm', 'node_modules', name);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    const root = pkg.exports && (pkg.exports['.'] || pkg.exports);
    const entry = (root && (root.import || root.default)) || pkg.module || pkg.main;
    return import(pathToFileURL(join(dir, typeof entry === 'string' ? entry : entry.default)).href);
}

// Print one JSON line with what happened; the Perl side checks it.
export function report(results) {
    process.stdout.write(JSON.stringify(results) + '\n');
}
