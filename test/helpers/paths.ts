import { fileURLToPath } from 'node:url';
/** The repository root, from dist/test/helpers/paths.js. */
export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
