import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatWarning } from '../../src/k8s/types.js';

test('warnings name the file, document, object and field', () => {
  assert.equal(
    formatWarning({ source: 'svc.yaml', document: 2, kind: 'Service', object: 'default/web', field: 'spec.clusterIP', message: 'invalid IP "1.2.3"' }),
    'svc.yaml#2: Service default/web: spec.clusterIP: invalid IP "1.2.3"',
  );
});
