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
};
