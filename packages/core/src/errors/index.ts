export { SessionboxError, ValidationError, NotFoundError, PayloadTooLargeError, UnsupportedMediaTypeError, UnavailableError, isSessionboxError } from './errors';
