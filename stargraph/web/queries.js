/** Every GraphQL document the client sends, in one place (names fixed by DESIGN.md). */

const IMAGE_FIELDS = "id url width height seed createdAt";

const JOB_FIELDS = `
  id status queuePosition prompt translatedPrompt negativePrompt count width height steps cfg
  sampler scheduler model seed workflow priority translation cost charged
  progress { step maxSteps fraction }
  images { ${IMAGE_FIELDS} }
  error { code message }
  createdAt startedAt finishedAt`;

export const REGISTER = `mutation Register($username: String!, $password: String!) {
  register(username: $username, password: $password) { token user { id username role } }
}`;

export const LOGIN = `mutation Login($username: String!, $password: String!) {
  login(username: $username, password: $password) { token user { id username role } }
}`;

export const LOGOUT = "mutation Logout { logout }";

/** Everything the page needs after sign-in, in one round trip. */
export const BOOTSTRAP = `query Bootstrap {
  me { id username role }
  balance { available frozen }
  pricePerImage
  models samplers schedulers
  workflows { name description }
  queue { length running healthyBackends etaSeconds }
}`;

export const BALANCE = "query Balance { balance { available frozen } }";

export const QUEUE = "query Queue { queue { length running healthyBackends etaSeconds } }";

export const ACTIVE_JOBS = `query ActiveJobs {
  jobs(first: 20, status: [QUEUED, DISPATCHED, RUNNING]) { edges { node { ${JOB_FIELDS} } } }
}`;

export const JOB = `query Job($id: ID!) { job(id: $id) { ${JOB_FIELDS} } }`;

export const SUBMIT = `mutation Submit($input: Text2ImageInput!) {
  submitText2Image(input: $input) { ${JOB_FIELDS} }
}`;

export const CANCEL = `mutation Cancel($id: ID!) { cancelJob(id: $id) { ${JOB_FIELDS} } }`;

export const GALLERY = `query Gallery($first: Int!, $after: String) {
  gallery(first: $first, after: $after) {
    edges { cursor node { ${IMAGE_FIELDS} job {
      id prompt translatedPrompt negativePrompt count width height steps cfg sampler scheduler
      model seed workflow priority translation
    } } }
    pageInfo { hasNextPage endCursor }
  }
}`;

export const DELETE_IMAGE = "mutation DeleteImage($id: ID!) { deleteImage(id: $id) }";

export const MY_JOB_EVENTS = `subscription MyJobEvents($after: String) {
  myJobEvents(after: $after) {
    __typename jobId at status cursor
    ... on JobQueued { position }
    ... on JobProgress { step maxSteps fraction }
    ... on JobPreview { image }
    ... on JobSucceeded { images { ${IMAGE_FIELDS} } }
    ... on JobFailed { error { code message } }
  }
}`;
