export { MAX_FILE_PATH_BYTES, filePathProblem, checkFilePath, filePathFromUrl, FilePath } from './file-path';
export { mimeTypeOf } from './mime';
export { FILEOPS_CMD, runFileOp } from './fileops-client';
export type { SessionFile } from './live-files';
export { SessionFiles } from './session-files';
export { hibernationMethod, type HibernationMethod } from './session-checkpoint';
export { encodeFilePath } from './path-encoding';
