/** Who is asking: the API key's name owns what it creates; `*` sees everything (admin). */
export interface Caller {
  owner: string;
}

export const ADMIN: Caller = { owner: '*' };
