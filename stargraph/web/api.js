/**
 * HTTP GraphQL: POST {query, variables} to the endpoint with `Authorization: Bearer <token>`.
 * A response with `errors` becomes a GraphQLRequestError carrying `extensions.code` and, for
 * BAD_USER_INPUT, the Text2ImageInput field it concerns.
 */

export class GraphQLRequestError extends Error {
  constructor(errors, status = 0) {
    super(errors[0]?.message ?? "Request failed");
    this.name = "GraphQLRequestError";
    this.errors = errors;
    this.status = status;
    this.code = errors[0]?.extensions?.code ?? (status ? `HTTP_${status}` : "NETWORK");
  }

  /** Every `{field, message}` pair the server pointed at (BAD_USER_INPUT errors). */
  get fieldErrors() {
    return this.errors
      .filter((e) => e.extensions?.field)
      .map((e) => ({ field: e.extensions.field, message: e.message }));
  }
}

/**
 * A `request(query, variables)` function bound to an endpoint and a token source.
 * `onUnauthenticated` runs when a request that carried a token is refused as UNAUTHENTICATED.
 */
export function createApi({ endpoint, getToken, onUnauthenticated = () => {} }) {
  return async function request(query, variables = {}) {
    const token = getToken();
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await send(endpoint, headers, JSON.stringify({ query, variables }));
    const body = await readJson(response);
    if (body?.errors?.length) {
      const error = new GraphQLRequestError(body.errors, response.status);
      if (token && error.code === "UNAUTHENTICATED") onUnauthenticated();
      throw error;
    }
    if (!response.ok || !body?.data) {
      throw new GraphQLRequestError([{ message: `HTTP ${response.status}` }], response.status);
    }
    return body.data;
  };
}

async function send(endpoint, headers, body) {
  try {
    return await fetch(endpoint, { method: "POST", headers, body });
  } catch (cause) {
    throw new GraphQLRequestError([{ message: String(cause), extensions: { code: "NETWORK" } }]);
  }
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}
