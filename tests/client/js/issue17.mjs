// Issue 17's features through Qdrant's JS client (@qdrant/js-client-rest), against the Keel
// server at process.argv[2]. Prints one JSON object: what each call answered, for the Python
// test to compare with the same requests made over plain HTTP.
import { QdrantClient } from "@qdrant/js-client-rest";

const client = new QdrantClient({ url: process.argv[2], checkCompatibility: false });
const name = "js17";
const out = {};

await client.createCollection(name, {
  vectors: {
    text: { size: 4, distance: "Cosine" },
    colbert: { size: 4, distance: "Dot", multivector_config: { comparator: "max_sim" } },
  },
});
const points = [];
for (let i = 0; i < 20; i++) {
  const row = (k) => [Math.sin(i + k), Math.cos(i * 2 + k), ((i * 7 + k) % 5) / 5, 1];
  points.push({
    id: i,
    vector: { text: row(0), colbert: [row(1), row(2), row(3)].slice(0, 1 + (i % 3)) },
    payload: { rank: i, city: i % 2 ? "Berlin" : "Paris" },
  });
}
await client.upsert(name, { wait: true, points });

const matrix = [[1, 0, 0.5, 1], [0, 1, 0.5, 1]];
out.maxsim = (await client.query(name, { query: matrix, using: "colbert", limit: 5 })).points;
out.rerank = (
  await client.query(name, {
    prefetch: { query: [1, 0.5, 0.2, 1], using: "text", limit: 10 },
    query: matrix,
    using: "colbert",
    limit: 3,
  })
).points;
out.formula = (
  await client.query(name, {
    prefetch: { query: [1, 0.5, 0.2, 1], using: "text", limit: 10 },
    query: {
      formula: { sum: ["$score", { mult: [0.01, "rank"] }] },
      defaults: { rank: 0 },
    },
    limit: 5,
  })
).points;
await client.createVectorName(name, "extra", { dense: { size: 2, distance: "Euclid" } });
await client.updateVectors(name, { wait: true, points: [{ id: 3, vector: { extra: [1, 2] } }] });
out.extra = (await client.query(name, { query: [1, 2], using: "extra", limit: 3 })).points;
out.vectors_after_create = Object.keys((await client.getCollection(name)).config.params.vectors).sort();
await client.deleteVectorName(name, "extra");
out.vectors_after_delete = Object.keys((await client.getCollection(name)).config.params.vectors).sort();
await client.deleteCollection(name);
console.log(JSON.stringify(out));
