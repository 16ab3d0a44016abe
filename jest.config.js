/** Tests run against the real Docker engine and real Redis (see scripts/test.sh). */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/tests'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.tsx?$': ['@swc/jest'] },
  moduleNameMapper: {
    '^@sessionbox/core$': '<rootDir>/packages/core/src/index.ts',
    '^@sessionbox/client$': '<rootDir>/packages/client/src/index.ts',
    '^@sessionbox/client/(langchain|ai|openai-agents)$': '<rootDir>/packages/client/src/tools/$1.ts',
  },
  testTimeout: 120000,
  maxWorkers: 1,
  // Every test file closes what it opened and exits on its own when run alone. The whole suite in
  // one process still kept a handle open after its last test (not found yet; no file shows it on
  // its own), so jest is told to exit: it then prints "Force exiting Jest" instead of hanging CI.
  forceExit: true,
};
