export { GROUP, VERSION, DEFAULT_STORAGE_PATH } from './types.ts';
