export { MAX_FILE_PATH_BYTES, InvalidPathError, filePathProblem, checkFilePath, filePathFromUrl, FilePath } from './file-path';
export { mimeTypeOf } from './mime';
export { FILEOPS_CMD, FileTooLargeError, runFileOp } from './fileops-client';
export type { SessionFile } from './live-files';
export { SessionFiles } from './session-files';
export { encodeFilePath } from './path-encoding';
