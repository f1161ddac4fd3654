// One LibreChat turn against an OpenAI-compatible endpoint, made with LibreChat's own client
// code (@librechat/agents, pinned in package.json), printed as one JSON object on stdout.
//
// Usage: node run_case.mjs '<json>', or one JSON per line on stdin, each answered by one line
// (tests/support/librechat_client.py keeps one process for a whole test module):
//   {"case": "chat" | "title" | "responses" | "summary", "baseURL": ".../v1", "apiKey": "...",
//    "email": "header value", "librechatUser": "24-hex id", "model": "...", "text": "...",
//    "history": [{"role": "user" | "assistant", "content": "..."}], "maxContextTokens": N}
//
// LibreChat's server (api/, packages/api/) is not on npm, so what it does around the package
// is rebuilt here from its sources (github.com/danny-avila/LibreChat); each step names the
// file it follows. Only options LibreChat sets are set; where we are unsure it says so.
// A custom endpoint in librechat.yaml such as
//   endpoints: {custom: [{name: Solaris, baseURL: <proxy>/v1, apiKey: <key>,
//     headers: {x-litellm-end-user-id: "{{LIBRECHAT_USER_EMAIL}}"}, models: {default: [...]}}]}
// reaches the agents package as follows (every chat in LibreChat ≥ 0.8 is an agents run,
// an "ephemeral agent" when the user picked a model rather than an agent).
//
// Left out or unsure: the Express/MongoDB layer (the stored message is the content parts
// below); the memory agent (memory: in librechat.yaml runs its own Run with memory tools);
// activity labels; resolveHeaders' `b64:` encoding of header values above U+00FF (the caller
// passes the header value as LibreChat would send it); how LibreChat derives
// maxContextTokens when the user sets none (the cases that need it set the parameter).
// LibreChat's own lock file may resolve @langchain/* differently: here npm gives the SDK its
// pinned @langchain/core 1.2.8 and the rest 1.4.0, whose retry code (AsyncCaller) is the same.

import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import {
  Run,
  Callback,
  Providers,
  GraphEvents,
  createTokenCounter,
  formatAgentMessages,
  createContentAggregator,
  createMetadataAggregator,
} from '@librechat/agents';

const endpointName = 'Solaris'; // the custom endpoint's `name` in librechat.yaml

/** packages/api/src/endpoints/custom/initialize.ts (initializeCustom) → getOpenAIConfig
 *  (packages/api/src/endpoints/openai/config.ts, llm.ts): the request's model parameters plus
 *  `user: req.user.id` (the MongoDB id, sent as the body's `user`), `streaming: true`, the
 *  key, and `configuration: {baseURL, defaultHeaders}` with the endpoint's `headers`, whose
 *  `{{LIBRECHAT_USER_EMAIL}}` resolveHeaders (packages/api/src/utils/env.ts) has already
 *  filled in: the caller passes the resolved value. No max_tokens: LibreChat sets none
 *  unless the user sets one. */
function endpointOptions(input, modelParameters) {
  const modelOptions = { ...modelParameters, user: input.librechatUser };
  const llmConfig = Object.assign({ streaming: true, model: modelOptions.model ?? '' }, modelOptions);
  llmConfig.apiKey = input.apiKey;
  const configOptions = {
    baseURL: input.baseURL,
    defaultHeaders: { 'x-litellm-end-user-id': input.email },
  };
  return { llmConfig, configOptions };
}

/** The ephemeral agent after initializeAgent (packages/api/src/agents/initialize.ts): its
 *  model_parameters are the endpoint's llmConfig with `configuration` added, its provider
 *  `openAI` (a custom endpoint's provider), its endpoint the custom endpoint's name; custom
 *  endpoints use legacy (string) content. */
function ephemeralAgent(input) {
  const modelParameters = { model: input.model };
  if (input.case === 'responses') {
    // The "Use Responses API" switch of the model parameters panel.
    modelParameters.useResponsesApi = true;
  }
  if (input.maxContextTokens != null) {
    // The "Max context tokens" parameter; without it LibreChat takes the model's window
    // from its token tables (an unknown model name gets a default of some thousands).
    modelParameters.maxContextTokens = input.maxContextTokens;
  }
  const { llmConfig, configOptions } = endpointOptions(input, modelParameters);
  const { maxContextTokens, ...withoutContext } = llmConfig;
  return {
    id: 'ephemeral',
    provider: Providers.OPENAI,
    endpoint: endpointName,
    model_parameters: { ...withoutContext, configuration: configOptions },
    maxContextTokens,
    useLegacyContent: true,
  };
}

/** createRun's buildAgentInput (packages/api/src/agents/run.ts): `streaming` and `streamUsage`
 *  on, then for an openAI-provider agent on another endpoint (a custom one) `streamUsage`
 *  off and `usage: true`, which is why LibreChat's stream requests carry no stream_options.
 *  Summarization is on by default (shapeSummarizationConfig: enabled unless librechat.yaml
 *  says `enabled: false`, with the agent's own provider and model, no trigger: it runs
 *  whenever the context has to be pruned); with provider openAI the SDK reuses the agent's
 *  client options, headers included. */
function agentInput(agent) {
  const llmConfig = Object.assign(
    { provider: agent.provider, streaming: true, streamUsage: true },
    agent.model_parameters,
  );
  if (agent.provider === Providers.OPENAI && agent.endpoint !== agent.provider) {
    llmConfig.streamUsage = false;
    llmConfig.usage = true;
  }
  return {
    provider: agent.provider,
    reasoningKey: llmConfig.useResponsesApi === true ? 'reasoning' : 'reasoning_content',
    toolDefinitions: [],
    agentId: agent.id,
    tools: undefined,
    clientOptions: llmConfig,
    instructions: '',
    additional_instructions: undefined,
    maxContextTokens: agent.maxContextTokens,
    useLegacyContent: agent.useLegacyContent,
    summarizationEnabled: true,
    summarizationConfig: { provider: agent.provider, model: agent.model_parameters.model },
  };
}

/** LibreChat's stream handlers (api/server/controllers/agents/callbacks.js, getDefaultHandlers)
 *  feed every step and delta to the content aggregator; its parts become the stored message. */
function eventHandlers(aggregateContent, collectedUsage) {
  const aggregate = { handle: (event, data) => aggregateContent({ event, data }) };
  return {
    [GraphEvents.CHAT_MODEL_END]: {
      handle: (_event, data) => {
        const usage = data?.output?.usage_metadata;
        if (usage) {
          collectedUsage.push(usage);
        }
      },
    },
    [GraphEvents.ON_RUN_STEP]: aggregate,
    [GraphEvents.ON_RUN_STEP_DELTA]: aggregate,
    [GraphEvents.ON_RUN_STEP_COMPLETED]: aggregate,
    [GraphEvents.ON_MESSAGE_DELTA]: aggregate,
    [GraphEvents.ON_REASONING_DELTA]: aggregate,
    [GraphEvents.ON_SUMMARIZE_DELTA]: aggregate,
    [GraphEvents.ON_SUMMARIZE_COMPLETE]: aggregate,
  };
}

/** What the browser shows for an error part: client/src/components/Messages/Content/Error.tsx
 *  wraps any text that holds no JSON with a known `code`/`type` in
 *  "Something went wrong. Here's the specific error message we encountered: …", cutting
 *  text without JSON at 512 characters; extractJson is client/src/utils/json.ts. Our
 *  `code` values are not among its known keys, so JSON in the text changes nothing here. */
function extractJson(text) {
  let openBraces = 0;
  let startIndex = -1;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '{') {
      if (openBraces === 0) {
        startIndex = i;
      }
      openBraces++;
    } else if (text[i] === '}') {
      openBraces--;
      if (openBraces === 0 && startIndex !== -1) {
        return text.slice(startIndex, i + 1);
      }
    }
  }
  return '';
}

const knownErrorKeys = new Set([
  'moderation', 'no_user_key', 'invalid_user_key', 'no_base_url', 'invalid_request',
  'no_system_messages', 'expired_user_key', 'input_length', 'ban', 'invalid_api_key',
  'insufficient_quota', 'concurrent', 'message_limit', 'token_balance',
]);

function shownError(text) {
  const jsonString = extractJson(text);
  const errorMessage = text.length > 512 && !jsonString ? text.slice(0, 512) + '...' : text;
  const defaultResponse = `Something went wrong. Here's the specific error message we encountered: ${errorMessage}`;
  try {
    const json = JSON.parse(jsonString);
    const key = json.code || json.type;
    if (knownErrorKeys.has(key)) {
      return `[LibreChat's own text for ${key}]`;
    }
  } catch {
    // not JSON: the default wording
  }
  return defaultResponse;
}

/** AgentClient.chatCompletion (api/server/controllers/agents/client.js): the run, and on an
 *  error (not an abort) one content part of type error, "An error occurred while processing
 *  the request: <err.message>", stored with the message. */
async function chatCompletion(input, agent, payload, ids) {
  const { contentParts, aggregateContent } = createContentAggregator();
  const collectedUsage = [];
  const abortController = new AbortController();
  let run;
  let failure;
  try {
    const { messages, indexTokenCountMap } = formatAgentMessages(payload, {}, new Set());
    run = await Run.create({
      runId: ids.responseMessageId,
      graphConfig: {
        signal: abortController.signal,
        agents: [agentInput(agent)],
        edges: [],
        type: 'standard',
      },
      customHandlers: eventHandlers(aggregateContent, collectedUsage),
      indexTokenCountMap,
      // LibreChat counts with its own tokenizer, o200k_base for agents (AgentClient.getEncoding).
      tokenCounter: await createTokenCounter('o200k_base'),
    });
    const config = {
      runName: 'AgentRun',
      configurable: {
        thread_id: ids.conversationId,
        last_agent_index: 0,
        user_id: input.librechatUser,
        requestBody: {
          messageId: ids.responseMessageId,
          conversationId: ids.conversationId,
          parentMessageId: ids.parentMessageId,
        },
        user: { id: input.librechatUser, email: input.email },
        last_agent_id: agent.id,
      },
      recursionLimit: 50,
      signal: abortController.signal,
      streamMode: 'values',
      version: 'v2',
    };
    await run.processStream({ messages }, config, {
      callbacks: { [Callback.TOOL_ERROR]: () => {} },
    });
  } catch (err) {
    failure = err;
    contentParts.push({
      type: 'error',
      error: `An error occurred while processing the request${err?.message ? `: ${err.message}` : ''}`,
    });
  }
  return { run, contentParts, collectedUsage, failure };
}

/** AgentClient.titleConvo: the endpoint's options again (titleModel unset: the chat's model),
 *  maxTokens dropped, the keys of omitTitleOptions (packages/api/src/agents/client.ts) left
 *  out, `streaming` among them; titleMethod unset in librechat.yaml means the SDK's default,
 *  `completion`. sanitizeTitle (packages/api) drops <think> blocks and collapses spaces. */
async function titleConvo(input, run, agent, contentParts, ids) {
  const omitTitleOptions = new Set([
    'stream', 'thinking', 'streaming', 'clientOptions', 'thinkingConfig', 'thinkingBudget',
    'includeThoughts', 'maxOutputTokens', 'additionalModelRequestFields',
  ]);
  const { llmConfig, configOptions } = endpointOptions(input, { model: agent.model_parameters.model });
  let clientOptions = { ...llmConfig, configuration: configOptions };
  delete clientOptions.maxTokens;
  clientOptions = Object.fromEntries(
    Object.entries(clientOptions).filter(([key]) => !omitTitleOptions.has(key)),
  );
  const { handleLLMEnd } = createMetadataAggregator();
  const result = await run.generateTitle({
    provider: Providers.OPENAI,
    clientOptions,
    inputText: input.text,
    contentParts,
    titleMethod: undefined,
    titlePrompt: undefined,
    titlePromptTemplate: undefined,
    chainOptions: {
      signal: new AbortController().signal,
      callbacks: [{ handleLLMEnd }],
      configurable: { thread_id: ids.conversationId, user_id: input.librechatUser },
    },
  });
  const cleaned = (result?.title ?? '').replace(/<think\b[^>]*>[\s\S]*?<\/think>/gi, '').replace(/\s+/g, ' ').trim();
  return cleaned.length > 0 ? cleaned : 'Untitled Conversation';
}

function describeError(err) {
  if (err == null) {
    return null;
  }
  return {
    name: err.name,
    message: err.message,
    status: err.status ?? err.response?.status,
    lc_error_code: err.lc_error_code,
    rateLimitType: err.rateLimitType,
    rateLimitReason: err.rateLimitReason,
    retryAfterMs: err.retryAfterMs,
  };
}

async function runCase(input) {
  const ids = {
    conversationId: randomUUID(),
    parentMessageId: randomUUID(),
    responseMessageId: randomUUID(),
  };
  const agent = ephemeralAgent(input);
  const payload = [...(input.history ?? []), { role: 'user', content: input.text }];
  const { run, contentParts, collectedUsage, failure } = await chatCompletion(input, agent, payload, ids);
  const result = {
    case: input.case,
    // The message LibreChat stores: its content parts, reduced to type and text.
    parts: contentParts.filter(Boolean).map((part) => ({
      type: part.type,
      text: part.type === 'text' ? part.text : part.type === 'error' ? part.error : undefined,
      summary: part.type === 'summary' ? part.content?.map((c) => c.text ?? '').join('') : undefined,
    })),
    usage: collectedUsage,
    error: describeError(failure),
  };
  // What the user reads: the text parts, and an error part as the browser renders it.
  result.shown = result.parts
    .map((part) => (part.type === 'text' ? part.text : part.type === 'error' ? shownError(part.text) : null))
    .filter((text) => text != null && text !== '')
    .join('\n');
  if (input.case === 'title' && failure == null) {
    // request.js asks for a title after the first answer of a new conversation, in the background.
    try {
      result.title = await titleConvo(input, run, agent, contentParts, ids);
    } catch (err) {
      // titleConvo logs and returns nothing: the conversation keeps its default name.
      result.title = null;
      result.titleError = describeError(err);
    }
  }
  return result;
}

/** One case from the command line, or one per line of stdin, each answered by one line:
 *  loading the package takes seconds, so the tests keep one process for all their cases. */
async function main() {
  if (process.argv[2] != null) {
    process.stdout.write(JSON.stringify(await runCase(JSON.parse(process.argv[2]))) + '\n');
    return;
  }
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === '') {
      continue;
    }
    let result;
    try {
      result = await runCase(JSON.parse(line));
    } catch (err) {
      result = { crashed: describeError(err), stack: err?.stack };
    }
    process.stdout.write(JSON.stringify(result) + '\n');
  }
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ crashed: describeError(err), stack: err?.stack }) + '\n');
  process.exitCode = 1;
});
