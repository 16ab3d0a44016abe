export { MAX_FILE_PATH_BYTES, InvalidPathError, filePathProblem, checkFilePath, filePathFromUrl, FilePath } from './file-path';
export { mimeTypeOf } from './mime';
export { FILEOPS_CMD, FileTooLargeError, SessionFiles } from './session-files';
export type { SessionFile } from './session-files';
