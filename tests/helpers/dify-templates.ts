/**
 * The runner scripts Dify's code executor wraps around a Code or Template node's code (its
 * python3, jinja2 and javascript transformers), shared by the dify-sandbox tests and bench.
 */

// Python3TemplateTransformer.get_runner_script() after dedent.
export const PYTHON3_RUNNER = `{{code}}

import json
from base64 import b64decode

# decode and prepare input dict
inputs_obj = json.loads(b64decode('{{inputs}}').decode('utf-8'))

# execute main function
output_obj = main(**inputs_obj)

# convert output to json and print
output_json = json.dumps(output_obj, indent=4)
result = f'''<<RESULT>>{output_json}<<RESULT>>'''
print(result)
`;

// Jinja2TemplateTransformer.get_runner_script() and get_preload_script() after dedent.
export const JINJA2_RUNNER = `
# declare main function
def main(**inputs):
    import jinja2
    template = jinja2.Template('''{{code}}''')
    return template.render(**inputs)

import json
from base64 import b64decode

# decode and prepare input dict
inputs_obj = json.loads(b64decode('{{inputs}}').decode('utf-8'))

# execute main function
output = main(**inputs_obj)

# convert output and print
result = f'''<<RESULT>>{output}<<RESULT>>'''
print(result)

`;

export const JINJA2_PRELOAD = `
import jinja2
from base64 import b64decode

def _jinja2_preload_():
    # prepare jinja2 environment, load template and render before to avoid sandbox issue
    template = jinja2.Template('{{s}}')
    template.render(s='a')

if __name__ == '__main__':
    _jinja2_preload_()

`;

// NodeJsTemplateTransformer.get_runner_script() after dedent.
export const NODEJS_RUNNER = `
// declare main function
{{code}}

// decode and prepare input object
var inputs_obj = JSON.parse(Buffer.from('{{inputs}}', 'base64').toString('utf-8'))

// execute main function
var output_obj = main(inputs_obj)

// convert output to json and print
var output_json = JSON.stringify(output_obj)
var result = \`<<RESULT>>\${output_json}<<RESULT>>\`
console.log(result)
`;
