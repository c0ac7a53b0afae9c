// The HTTP API through the official OpenAI JS SDK (the npm package "openai"), against a silo serving the demo model
// (random weights: what is checked is the shape of every reply, and what constrained decoding guarantees).
// Needs the silo built (dotnet build src/Silo -c Release, or the solution's test run); WEFT_SILO_DLL overrides where.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import path from "node:path";
import OpenAI from "openai";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const siloDll = process.env.WEFT_SILO_DLL ?? path.join(root, "src/Silo/bin/Release/net10.0/Weft.Silo.dll");

const freePort = () => new Promise(resolve => {
  const server = createServer().listen(0, "127.0.0.1", () => {
    const { port } = server.address();
    server.close(() => resolve(port));
  });
});

let silo, client, model, log = "";

before(async () => {
  const [http, siloPort] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${http}`;
  silo = spawn("dotnet", [siloDll, "--urls", url, "--silo-port", String(siloPort), "--gateway-port", "0",
    "--engine", "cpu"], { stdio: ["ignore", "pipe", "pipe"] });
  silo.stdout.on("data", d => { log += d; });
  silo.stderr.on("data", d => { log += d; });
  // the demo model is generated on first use, then loaded: /health says when it is ready
  for (let i = 0; ; i++) {
    const ok = await fetch(`${url}/health`).then(r => r.ok, () => false);
    if (ok) break;
    if (i > 600 || silo.exitCode !== null) throw new Error(`the silo did not become ready:\n${log}`);
    await new Promise(r => setTimeout(r, 100));
  }
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 });
  model = (await client.models.list()).data[0].id;
});

after(() => silo?.kill("SIGTERM"));

const user = text => [{ role: "user", content: text }];

test("A chat reply streamed equals the same reply whole at temperature 0", async () => {
  const request = { model, messages: user("Name three colours."), temperature: 0, max_tokens: 24 };
  const whole = await client.chat.completions.create(request);
  const stream = await client.chat.completions.create({ ...request, stream: true,
    stream_options: { include_usage: true } });
  let text = "", finish = null, usage = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      text += c.delta.content ?? "";
      finish = c.finish_reason ?? finish;
    }
    usage = chunk.usage ?? usage;
  }
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  // the second request finds the first's prompt in the prefix cache: only the cached count differs
  assert.equal(usage.prompt_tokens, whole.usage.prompt_tokens);
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
  assert.ok(whole.usage.completion_tokens > 0 && whole.usage.completion_tokens <= 24);
});

const weather = {
  type: "function",
  function: {
    name: "get_weather", description: "The weather in a city",
    parameters: {
      type: "object", additionalProperties: false, required: ["city", "unit"],
      properties: {
        city: { type: "string", maxLength: 12 },
        unit: { type: "string", enum: ["celsius", "fahrenheit"] },
      },
    },
  },
};

test("A named tool choice forces a call whose arguments parse and follow the schema", async () => {
  for (let seed = 1; seed <= 3; seed++) {
    const reply = await client.chat.completions.create({
      model, messages: user("Weather in Oslo?"), tools: [weather], temperature: 1, seed, max_tokens: 300,
      tool_choice: { type: "function", function: { name: "get_weather" } },
    });
    const choice = reply.choices[0];
    assert.equal(choice.finish_reason, "tool_calls");
    assert.equal(choice.message.tool_calls.length, 1);
    const call = choice.message.tool_calls[0];
    assert.match(call.id, /^call_/);
    assert.equal(call.function.name, "get_weather");
    const args = JSON.parse(call.function.arguments);
    assert.deepEqual(Object.keys(args).sort(), ["city", "unit"]);
    assert.ok(typeof args.city === "string" && args.city.length <= 12);
    assert.ok(["celsius", "fahrenheit"].includes(args.unit));
  }
});

test("A streamed tool call the SDK accumulates from its deltas equals the whole reply at temperature 0", async () => {
  const request = {
    model, messages: user("Weather in Oslo?"), tools: [weather], temperature: 0, max_tokens: 300,
    tool_choice: { type: "function", function: { name: "get_weather" } },
  };
  const whole = await client.chat.completions.create(request);
  const stream = client.chat.completions.stream(request);
  let pieces = 0;
  stream.on("chunk", chunk => { pieces += chunk.choices[0]?.delta.tool_calls?.length ?? 0; });
  const streamed = await stream.finalChatCompletion();
  const [call] = streamed.choices[0].message.tool_calls;
  assert.equal(streamed.choices[0].finish_reason, "tool_calls");
  assert.match(call.id, /^call_/);
  assert.equal(call.function.name, whole.choices[0].message.tool_calls[0].function.name);
  assert.equal(call.function.arguments, whole.choices[0].message.tool_calls[0].function.arguments);
  // the arguments came as the model wrote them, not in one piece at the end
  assert.ok(pieces > 2, `${pieces} tool call deltas`);
});

test("A strict json_schema response format gives replies that parse and validate", async () => {
  const schema = {
    type: "object", additionalProperties: false, required: ["name", "age", "tags"],
    properties: {
      name: { type: "string", maxLength: 10 }, age: { type: "integer" },
      tags: { type: "array", items: { type: "string", maxLength: 5 }, maxItems: 3 },
    },
  };
  for (let seed = 1; seed <= 3; seed++) {
    const reply = await client.chat.completions.create({
      model, messages: user("A person, please."), temperature: 1, seed, max_tokens: 300,
      response_format: { type: "json_schema", json_schema: { name: "person", strict: true, schema } },
    });
    assert.equal(reply.choices[0].finish_reason, "stop");
    const person = JSON.parse(reply.choices[0].message.content);
    assert.deepEqual(Object.keys(person).sort(), ["age", "name", "tags"]);
    assert.ok(typeof person.name === "string" && person.name.length <= 10);
    assert.ok(Number.isInteger(person.age));
    assert.ok(Array.isArray(person.tags) && person.tags.length <= 3);
    for (const tag of person.tags) assert.ok(typeof tag === "string" && tag.length <= 5);
  }
});

test("Logprobs give each token its value and its alternatives, most likely first", async () => {
  const reply = await client.chat.completions.create({
    model, messages: user("Hello!"), temperature: 0, max_tokens: 8, logprobs: true, top_logprobs: 3,
  });
  const content = reply.choices[0].logprobs.content;
  assert.equal(content.length, reply.usage.completion_tokens);
  for (const t of content) {
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 3);
    // greedy: the token taken is the most likely one
    assert.equal(t.top_logprobs[0].token, t.token);
    assert.equal(t.top_logprobs[0].logprob, t.logprob);
    assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob);
    assert.ok(Array.isArray(t.bytes));
  }
  assert.equal(content.map(t => t.token).join(""), reply.choices[0].message.content);
});

test("n = 2 gives two choices, each as the same request alone with its own seed", async () => {
  const request = { model, messages: user("Tell me a story."), temperature: 1, seed: 11, max_tokens: 12,
    ignore_eos: true };
  const reply = await client.chat.completions.create({ ...request, n: 2 });
  assert.deepEqual(reply.choices.map(c => c.index), [0, 1]);
  for (const [i, choice] of reply.choices.entries()) {
    const alone = await client.chat.completions.create({ ...request, seed: 11 + i });
    assert.equal(choice.message.content, alone.choices[0].message.content);
  }
  assert.equal(reply.usage.completion_tokens, 24);
});

test("The Responses API streams typed events whose text is the stored response's", async () => {
  const stream = await client.responses.create({
    model, input: "Name a colour.", instructions: "Be brief.", temperature: 0, max_output_tokens: 16, stream: true,
  });
  const types = [];
  let text = "", done = null, last = -1;
  for await (const event of stream) {
    types.push(event.type);
    assert.ok(event.sequence_number > last);
    last = event.sequence_number;
    if (event.type === "response.output_text.delta") text += event.delta;
    if (event.type === "response.completed" || event.type === "response.incomplete") done = event.response;
  }
  assert.equal(types[0], "response.created");
  assert.ok(types.includes("response.output_text.delta"));
  // a reply that reaches max_output_tokens ends "incomplete", as OpenAI's does
  assert.equal(types.at(-1), `response.${done.status}`);
  assert.equal(done.status === "incomplete", done.usage.output_tokens === 16);
  assert.equal(done.output[0].content[0].text, text);
  const stored = await client.responses.retrieve(done.id);
  assert.equal(stored.output_text, text);
  assert.equal(stored.usage.output_tokens, done.usage.output_tokens);
});
